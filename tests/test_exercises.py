"""siolab.exercises: self-checks say right, not quite (with a hint) or not answered yet, and never raise."""
from __future__ import annotations

import pytest

from siolab import exercises as ex
from siolab.exercises import Feedback


def marks(fb: Feedback) -> list[str]:
    return [i.mark for i in fb.items]


# ---------------------------------------------------------------- Feedback


def test_feedback_summary_and_rendering():
    fb = ex.check({"a": 1, "b": "x"}, {"a": 1, "b": "X"}, title="T")
    assert fb.ok and fb.right == 2 and "All 2 right" in fb.summary
    assert str(fb).startswith("T\n") and "✔" in str(fb)
    html = ex.check({"a": "<b>"}, {"a": 1}, title="T")._repr_html_()
    assert "got &#x27;&lt;b&gt;&#x27;" in html and "<b>T</b>" in html  # the learner's text is escaped
    assert "<script>" not in ex.check({"<script>": 1}, {"a": 1})._repr_html_()


def test_not_answered_yet_is_kind_and_not_a_failure():
    fb = ex.check({"a": None, "b": None}, {"a": 1, "b": 2})
    assert marks(fb) == ["todo", "todo"] and not fb.answered and not fb.ok
    assert "Not answered yet" in fb.summary
    assert "Not answered yet" in ex.check(None, {"a": 1}).summary


def test_partly_answered():
    fb = ex.check({"a": 1, "b": 3, "c": None}, {"a": 1, "b": 2, "c": 3})
    assert marks(fb) == ["right", "wrong", "todo"]
    assert "1 of 3 right" in fb.summary and "1 still to answer" in fb.summary and "hints" in fb.summary


def test_wrong_shapes_and_typos_get_a_note_not_an_exception():
    fb = ex.check([1, 2], {"a": 1})
    assert marks(fb) == ["note"] and "dict" in fb.items[0].text
    fb = ex.check({"a": 1, "aa": 2}, {"a": 1})
    assert marks(fb) == ["right", "note"] and "typo" in fb.items[1].text
    assert marks(ex.check({"a": object()}, {"a": 1})) == ["wrong"]


def test_equals_normalises_numbers_and_text():
    assert ex.equals(2)("2")[0] and ex.equals(2)(2.0)[0] and ex.equals(0.5)("0.5 s")[0]
    assert not ex.equals(2)(True)[0] and not ex.equals(2)("two")[0]
    assert ex.equals("Binary_Event")("binary event")[0]
    assert ex.equals([1, 2])((1, 2.0))[0] and not ex.equals([1, 2])([1])[0]


def test_one_of_accepts_text_classes_and_exceptions():
    import socketio
    grade = ex.one_of(["badnamespaceerror"])
    assert grade("it raises BadNamespaceError")[0]
    assert grade(socketio.exceptions.BadNamespaceError)[0]
    assert grade(socketio.exceptions.BadNamespaceError("/ is not a connected namespace."))[0]
    assert not grade("nothing happens")[0]


# ---------------------------------------------------------------- lesson 05


def test_decoding_as_shipped_says_not_answered_yet():
    fb = ex.check_decoding({raw: None for raw in ex.DECODING_EXERCISE})
    assert set(marks(fb)) == {"todo"} and "Not answered yet" in fb.summary
    assert len(ex.check_decoding(None).items) == len(ex.DECODING_EXERCISE)


CORRECT = {
    "3": "pong",
    "41": "message disconnect",
    '432["ok"]': {"eio": "message", "sio": "ack", "ack": 2},
    '42/chat,["hi","all"]': {"eio": "MESSAGE", "sio": "EVENT", "nsp": "/chat", "event": "hi"},
    '40/admin,{"token":"s3cret"}': {"eio": 4, "sio": "0", "nsp": "/admin"},
    '451-["upload",{"_placeholder":true,"num":0}]': {"eio": "message", "sio": "binary_event", "attachments": 1},
    "6": {"eio": "noop"},
}


def test_decoding_all_right():
    assert set(CORRECT) == set(ex.DECODING_EXERCISE)
    fb = ex.check_decoding(CORRECT)
    assert fb.ok, str(fb)


@pytest.mark.parametrize("raw, answer, hint", [
    ("3", "ping", "3 = PONG"),
    ("41", "message connect", "1 = DISCONNECT"),
    ('432["ok"]', {"eio": "message", "sio": "ack", "ack": 3}, "ack id"),
    ('432["ok"]', "message ack", "also has ack"),
    ('42/chat,["hi"]', {"eio": "message", "sio": "event"}, "also has nsp"),
    ('42/chat,["hi"]', {"eio": "message", "sio": "event", "nsp": "/"}, "'/name,'"),
    ('42["hi"]', {"eio": "message", "sio": "event", "event": "hello"}, "first element"),
    ('451-["u",{"_placeholder":true,"num":0}]', {"eio": "message", "sio": "binary_event", "attachments": 2},
     "before '-'"),
    ("6", {"eio": "noop", "sio": "event"}, "carries no Socket.IO packet"),
    ("2", 42, "not a int"),
    ("2", "hello there", "could not find a packet type"),
    ("9", "ping", "not a valid packet"),
])
def test_decoding_hints(raw, answer, hint):
    [item] = ex.check_decoding({raw: answer}).items
    assert item.mark == "wrong" and hint in item.text, item.text


def test_decoding_accepts_the_seeds_error_name_with_a_note():
    [item] = ex.check_decoding({'44{"message":"no"}': "message ERROR"}).items
    assert item.mark == "right" and "CONNECT_ERROR" in item.text
    [item] = ex.check_decoding({'44{"message":"no"}': {"eio": "message", "sio": "connect_error"}}).items
    assert item.mark == "right" and "seed" not in item.text


def test_decoding_invalid_packets_and_binary():
    assert ex.check_decoding({"zz": "invalid"}).ok
    assert ex.check_decoding({"bAQIDBA==": {"eio": "message"}}).ok
    [item] = ex.check_decoding({"bAQIDBA==": {"eio": "message", "sio": "event"}}).items
    assert item.mark == "wrong" and "binary" in item.text
    [item] = ex.check_decoding({"3": {"eio": "pong", "colour": "red"}}).items
    assert item.mark == "right" and "ignored 'colour'" in item.text


def test_decoding_wrong_container():
    fb = ex.check_decoding(["3"])
    assert marks(fb) == ["note"] and not fb.ok


# ---------------------------------------------------------------- lessons 06, 07, 10


def test_acks_check():
    right = {"reply_to_423": "433[3]", "frames_for_two_blobs": 3, "call_without_answer": "TimeoutError"}
    assert ex.check_acks(right).ok
    assert set(marks(ex.check_acks(dict.fromkeys(right)))) == {"todo"}
    fb = ex.check_acks({"reply_to_423": "33[3]", "frames_for_two_blobs": 2, "call_without_answer": "returns None"})
    assert marks(fb) == ["wrong"] * 3
    assert "put a '4' in front" in fb.items[0].text
    assert "args is [4]" in ex.check_acks({"reply_to_423": "433[4]"}).items[0].text
    assert "not a valid packet" in ex.check_acks({"reply_to_423": "4x"}).items[0].text


def test_rooms_check():
    right = {"to_kitchen_skipping_alice": 2, "to_everyone": 4, "connects_for_two_namespaces": 2,
             "sessions_for_two_namespaces": 1, "chat_event_raw": '42/chat,["hi"]'}
    assert ex.check_rooms(right).ok
    fb = ex.check_rooms({**right, "to_kitchen_skipping_alice": 3, "chat_event_raw": '42["hi"]'})
    assert marks(fb) == ["wrong", "right", "right", "right", "wrong"]
    assert "nsp is '/'" in fb.items[4].text


def test_reconnection_check():
    right = {"base_waits": [1, 2, 4, 5], "jitter_seconds": 0.5,
             "python_emit_while_disconnected": "BadNamespaceError", "js_emit_while_disconnected": "buffered"}
    assert ex.check_reconnection(right).ok
    fb = ex.check_reconnection({**right, "base_waits": [1, 2, 4, 8], "jitter_seconds": "50%"})
    assert marks(fb)[:2] == ["wrong", "wrong"]


# ---------------------------------------------------------------- lessons 01, 02, 03, 09

OPEN = '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}'



def test_self_check_is_kind_about_missing_and_wrong_answers(capsys):
    assert ex.self_check(None, 3, hint="count them") is None
    assert "Not answered yet" in capsys.readouterr().out
    assert ex.self_check(4, 3, hint="count them") is False
    assert "Not quite" in capsys.readouterr().out
    assert ex.self_check("x", lambda a: int(a) == 3) is False  # a check that raises is a hint, not a crash
    assert "raised ValueError" in capsys.readouterr().out
    assert ex.self_check(3, 3, why="three packets") is True
    assert "Right! three packets" in capsys.readouterr().out
