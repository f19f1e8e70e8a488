"""The one JSON Lines writer writes anything a peer can put on the wire, and the reader loads every line back."""
import io
import json

from hypothesis import given, settings, strategies as st

from siolab import jsonl
from siolab.record import FIELDS, Record
from siolab.trace import Trace

# What python-socketio's JSON reads off the wire, and more: NaN, infinities, integers of any size, lone
# surrogates ("\ud800" is valid JSON text), NUL and bidi controls, bytes from a binary attachment.
WIRE_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
                    max_size=30)
LEAVES = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 30, max_value=10 ** 400)
          | st.floats(allow_nan=True, allow_infinity=True) | WIRE_TEXT | st.binary(max_size=20)
          | st.sampled_from(["\ud800", "\x00", "\u202eabc", "\udfff\ud83d"]))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WIRE_TEXT, inner,
                                                                                        max_size=4), max_leaves=12)


@st.composite
def records(draw) -> Record:
    return Record(t=draw(st.floats(min_value=0, max_value=1e6)), kind=draw(st.sampled_from(["packet", "http", "log"])),
                  dir=draw(st.sampled_from(["c2s", "s2c", None])), raw=draw(st.none() | WIRE_TEXT),
                  event=draw(st.none() | WIRE_TEXT), args=draw(st.none() | st.lists(VALUES, max_size=4)),
                  client=draw(st.none() | WIRE_TEXT), note=draw(st.none() | WIRE_TEXT),
                  error=draw(st.none() | WIRE_TEXT), sid=draw(st.none() | WIRE_TEXT))


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), min_size=1, max_size=5))
def test_every_line_written_loads_back_with_the_same_text_fields(batch):
    out = io.StringIO()
    assert jsonl.write(batch, out) == len(batch)
    text = out.getvalue()
    text.encode("utf-8")  # a file opened as UTF-8 takes it (a lone surrogate would raise here)
    assert text.count("\n") == len(batch)
    back = Trace.from_jsonl(text)
    assert len(back) == len(batch)
    for wrote, read in zip(batch, back):
        for name in ("t", "kind", "dir", "raw", "event", "client", "note", "error", "sid"):
            assert getattr(read, name) == getattr(wrote, name), name


def test_values_json_cannot_hold_are_written_as_text_that_says_what_they_were():
    rec = Record(t=1.0, args=[float("nan"), float("inf"), -float("inf"), 10 ** 5000, b"\x00\x01", "\ud800"])
    line = jsonl.dump_line(rec)
    obj = json.loads(line)
    assert obj["args"][:3] == ["nan", "inf", "-inf"] and "bits" in obj["args"][3]
    assert obj["args"][4] == "<2 bytes>" and obj["args"][5] == "\ud800"
    assert list(obj) == list(FIELDS)


def test_a_record_the_writer_cannot_write_becomes_an_error_line_not_a_lost_one():
    class Odd:
        def __repr__(self):
            raise RuntimeError("no repr")
    line = jsonl.dump_line(Record(t=2.0, kind="packet", args=[Odd()]))
    (back,) = Trace.from_jsonl(line)
    assert back.kind == "error" and back.t == 2.0 and "could not write this packet record" in back.error
