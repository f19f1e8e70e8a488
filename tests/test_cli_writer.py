"""The CLI tap's writer process: the records it rebuilds print and write exactly as the tap's own would."""
import io
import json
import os
import pickle
import subprocess
import sys

from siolab import jsonl
from siolab.cli import _END, _Printer, _Shipper, _item, _pack, _rebuild
from siolab.record import LazyRecord, new_record
from siolab.recorder import Recorder, parse_query

OPEN = b'0{"sid":"S1","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}'


def _records():
    """Records of every shape the tap makes: packets still undecoded (LazyRecords), decoded ones, HTTP
    records with a note worked out when read, WebSocket records, and awkward values."""
    recorder = Recorder()
    stream = recorder.websocket(None, "alice", None)
    out = recorder.message(stream, "s2c", 1, OPEN, 0.5)
    for payload in (b'42["echo","x"]', b'431["x"]', b'42/admin,7["chat",{"a":[1,2.5,null,true]}]',
                    b'42["bad json', b'2', b'3probe', '42["é\u2028",NaN]'.encode(),
                    b'451-["up",{"_placeholder":true,"num":0}]'):
        out += recorder.message(stream, "c2s", 1, payload, 1.0)
    out += recorder.message(stream, "c2s", 2, b"\x00\x01", 1.1)
    decoded = recorder.message(stream, "s2c", 1, b'430["y"]', 1.2)
    decoded[0].event  # noqa: B018 - read now: a decoded record travels with its fields
    out += decoded
    x = recorder.exchange(t=2.0, method="POST", path="/socket.io/", query_string="EIO=4&transport=polling&sid=S1",
                          query=parse_query("EIO=4&transport=polling&sid=S1"), client_header=None,
                          body=b'42["echo","y"]', server="A", key=object())
    out += recorder.request(x)[0]
    out += recorder.response(x, status=200, content_type="text/html", content_encoding=None, body=b"ok", t=2.1)[0]
    out += recorder.closed(stream, "c2s", 1000, 3.0)
    return out


def test_rebuilt_records_print_and_write_as_the_originals():
    originals, copies = _records(), _records()
    assert any(type(r) is LazyRecord for r in copies)
    items = [_item(r) for r in copies]
    rebuilt = [_rebuild(item) for item in pickle.loads(_pack(items)[4:])]
    assert [str(r) for r in rebuilt] == [str(r) for r in originals]
    assert [jsonl.dump_line(r) for r in rebuilt] == [jsonl.dump_line(r) for r in originals]
    assert rebuilt == originals


def test_a_record_that_cannot_be_pickled_goes_as_text():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    odd = new_record(t=1.0, kind="log", args=deep)
    item = _Shipper._safe(odd, _item(odd))
    assert item[0] == 2 and item[1] == str(odd) and item[2] == jsonl.dump_line(odd)


def test_the_writer_process_writes_the_file_then_the_terminal(tmp_path):
    records = _records()
    path = tmp_path / "t.jsonl"
    with open(path, "a", encoding="utf-8") as fh:
        writer = subprocess.Popen([sys.executable, "-c", "from siolab.cli import _writer_main; _writer_main()",
                                   str(fh.fileno())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  pass_fds=[fh.fileno()])
    writer.stdin.write(_pack([_item(r) for r in _records()]))
    writer.stdin.write(_pack([(_END, "siolab tap: stopped after 3 records", str(path))]))
    out, _ = writer.communicate(timeout=30)
    expected = io.StringIO()
    _Printer(expected, None).write(records)
    assert out.decode() == expected.getvalue() + "siolab tap: stopped after 3 records\n"
    assert path.read_text(encoding="utf-8") == "".join(jsonl.dump_line(r) for r in records)
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    assert [json.loads(line)["t"] for line in lines] == [r.t for r in records]


def test_nothing_is_formatted_for_dev_null(tmp_path):
    with open(os.devnull, "w") as null:
        jsonl_out = io.StringIO()
        printer = _Printer(null, jsonl_out)
        assert not printer.shown
        printer.write(_records())
        assert jsonl_out.getvalue() == "".join(jsonl.dump_line(r) for r in _records())
    assert _Printer(io.StringIO(), None).shown


def test_a_writer_gone_leaves_the_printing_to_the_tap(capsys):
    writer = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
    writer.wait()
    out = io.StringIO()
    shipper = _Shipper(writer, _Printer(out, None))
    records = _records()
    for r in records:
        shipper(r)
    shipper.flush()
    assert shipper.broken and "the writer process stopped" in capsys.readouterr().err
    assert out.getvalue() == "".join(str(r) + "\n" for r in records)
    shipper(records[0])  # from now on, the tap's own printer
    shipper.fallback.flush()
    assert out.getvalue().endswith(str(records[0]) + "\n")
