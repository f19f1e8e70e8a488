"""The fast constructor of frozen slots dataclasses makes exactly what the class itself makes."""
import dataclasses

import pytest

from siolab import protocol
from siolab.frozen import constructor
from siolab.record import LazyRecord, Record, lazy_packet, new_lazy, new_record


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


def test_default_factory_runs_per_object():
    @dataclasses.dataclass(frozen=True, slots=True)
    class Bag:
        items: list = dataclasses.field(default_factory=list)
    new_bag = constructor(Bag)
    a, b = new_bag(), new_bag()
    assert a == Bag() and a.items is not b.items
    assert new_bag(items=[1]).items == [1]


def test_the_server_is_an_argument_not_ambient_state():
    assert new_record(t=0.0).server is None is Record(t=0.0).server
    assert new_record(t=0.0, server="B").server == "B" == Record(t=0.0, server="B").server


def test_a_lazy_record_is_made_by_the_same_constructor_and_equals_the_decoded_one():
    lazy = lazy_packet(t=1.0, dir="c2s", transport="websocket", http=None, raw='42["chat","hi"]', sid="s",
                       client="alice", server="A")
    assert type(lazy) is LazyRecord
    assert lazy == Record(t=1.0, dir="c2s", transport="websocket", raw='42["chat","hi"]', eio="message",
                          sio="event", nsp="/", event="chat", args=["hi"], sid="s", client="alice", server="A")
    assert type(lazy) is not LazyRecord  # read once, it became an ordinary record (no properties in the way)
    with pytest.raises(TypeError):
        new_lazy(t=0.0)  # LazyRecord's own slot (_pending) is a required argument


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
