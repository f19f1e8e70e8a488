"""The fast constructor of frozen slots dataclasses makes exactly what the class itself makes."""
import dataclasses

import pytest

from siolab import protocol
from siolab.frozen import constructor
from siolab.trace import EXCHANGE_SERVER, Record, new_record


def test_a_record_made_fast_equals_one_made_by_the_class():
    values = dict(t=1.5, kind="http", dir="s2c", transport="polling",
                  http={"method": "GET", "path": "/", "status": 200}, raw="OK", note="n", sid="abc", client="alice",
                  args=[1, {"a": 2}], ack=3, attachments=1)
    fast, slow = new_record(**values), Record(**values)
    assert type(fast) is Record and fast == slow
    assert [getattr(fast, f.name) for f in dataclasses.fields(Record)] == \
           [getattr(slow, f.name) for f in dataclasses.fields(Record)]
    assert new_record(t=0.0) == Record(t=0.0)  # every default


def test_a_record_made_fast_is_frozen_and_works_with_replace():
    rec = new_record(t=1.0, raw="2", eio="ping")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.raw = "3"
    assert dataclasses.replace(rec, raw="3") == Record(t=1.0, raw="3", eio="ping")
    assert hash(new_record(t=1.0, raw="2")) == hash(Record(t=1.0, raw="2"))


def test_default_factory_runs_per_record_and_an_explicit_none_stays_none():
    token = EXCHANGE_SERVER.set("b")
    try:
        assert new_record(t=0.0).server == Record(t=0.0).server == "b"
        assert new_record(t=0.0, server=None).server is None is Record(t=0.0, server=None).server
    finally:
        EXCHANGE_SERVER.reset(token)
    assert new_record(t=0.0).server is None


def test_missing_and_unknown_fields_are_refused_like_the_class_does():
    with pytest.raises(TypeError):
        new_record(kind="packet")  # t is required
    with pytest.raises(TypeError):
        new_record(t=0.0, colour="red")


def test_packets_made_fast_equal_the_classes_own():
    eio = protocol.decode_eio('42["a",1]')
    assert eio == protocol.EioPacket(raw='42["a",1]', type="message", data='2["a",1]')
    sio = protocol.decode_sio('2["a",1]')
    assert sio == protocol.SioPacket(raw='2["a",1]', type="event", nsp="/", data=["a", 1])
    assert protocol.decode(eio) == protocol.Decoded(eio=eio, sio=sio, args=[1])


def test_only_frozen_slots_dataclasses_without_post_init_are_accepted():
    @dataclasses.dataclass
    class Plain:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self):
            pass
    for cls in (Plain, Checked, int):
        with pytest.raises(TypeError):
            constructor(cls)
