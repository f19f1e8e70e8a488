"""Self-checks for the "Try it" sections of the lessons.

Each ``check_*`` function takes the learner's ``answers`` (a dict whose values start as
``None``) and returns a ``Feedback``: shown in a notebook, it says kindly what is right, what
is not quite (with a hint), and what is still to answer. A check never raises on a strange
answer: it says what it expected instead. Truth about packets comes from ``siolab.explain``
(python-engineio's and python-socketio's own parsers), not from a copy kept here.

Lessons and their checks::

    00-04                   self_check(answer, expected_or_test)   (one answer at a time)
    05 packet numbers       check_decoding(answers)      (DECODING_EXERCISE lists packets to try)
    06 acks and binary      check_acks(answers)
    07 namespaces, rooms    check_rooms(answers)
    08 reconnection         check_reconnection(answers)
    any                     check(answers, expected)
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .protocol import EIO_TYPES, SIO_TYPES, explain

# ---------------------------------------------------------------- feedback

MARKS = {"right": "✔", "wrong": "✘", "todo": "…", "note": "ℹ"}
COLOURS = {"right": "#2e7d32", "wrong": "#c62828", "todo": "#6d6d6d", "note": "#1565c0"}


@dataclass(frozen=True)
class Item:
    """One line of feedback: ``mark`` is 'right', 'wrong', 'todo' or 'note'."""

    mark: str
    text: str


@dataclass
class Feedback:
    """What a self-check found; displays as a short, kind report."""

    title: str
    items: list[Item] = field(default_factory=list)

    def _count(self, mark: str) -> int:
        return sum(1 for i in self.items if i.mark == mark)

    @property
    def right(self) -> int:
        return self._count("right")

    @property
    def wrong(self) -> int:
        return self._count("wrong")

    @property
    def todo(self) -> int:
        return self._count("todo")

    @property
    def total(self) -> int:
        return self.right + self.wrong + self.todo

    @property
    def answered(self) -> bool:
        """True when at least one question has an answer."""
        return self.right + self.wrong > 0

    @property
    def ok(self) -> bool:
        """True when every question is answered and right."""
        return self.total > 0 and self.right == self.total

    @property
    def summary(self) -> str:
        if self.total == 0:
            return "There is nothing to check yet: put your answers in the dict and run the cell again."
        if not self.answered:
            return ("Not answered yet: replace the None values with your answers and run this cell again. "
                    "No hurry, and no penalty for trying.")
        if self.ok:
            return f"All {self.total} right. Well done!"
        text = f"{self.right} of {self.total} right so far."
        if self.wrong:
            text += " The hints below say where to look; have another go."
        if self.todo:
            text += f" {self.todo} still to answer."
        return text

    def __str__(self) -> str:
        lines = [self.title, self.summary]
        lines += [f"  {MARKS.get(i.mark, '-')} {i.text}" for i in self.items]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<li style='list-style:none;color:{COLOURS.get(i.mark, '#000')}'>{MARKS.get(i.mark, '-')} "
            f"{esc(i.text)}</li>" for i in self.items)
        return (f"<div><b>{esc(self.title)}</b><br>{esc(self.summary)}"
                f"<ul style='padding-left:1em;margin:0.3em 0'>{rows}</ul></div>")


# ---------------------------------------------------------------- graders

Grader = Callable[[Any], tuple[bool, str]]


@dataclass(frozen=True)
class Question:
    """One answer to check: ``grade(answer)`` returns (right, message)."""

    key: str
    grade: Grader


def _run(title: str, answers: Any, questions: Iterable[Question], extra_keys_ok: bool = False) -> Feedback:
    fb = Feedback(title)
    questions = list(questions)
    if answers is None:
        answers = {}
    if not isinstance(answers, dict):
        fb.items.append(Item("note", f"I expected a dict of answers like {{{questions[0].key!r}: ...}}, "
                                     f"but got a {type(answers).__name__}. Keep the dict from the exercise cell "
                                     f"and fill in its values."))
        return fb
    for q in questions:
        answer = answers.get(q.key)
        if answer is None or answer is Ellipsis or (isinstance(answer, str) and not answer.strip()):
            fb.items.append(Item("todo", f"{q.key}: not answered yet"))
            continue
        try:
            right, message = q.grade(answer)
        except Exception as exc:  # a strange answer must not break the cell
            right, message = False, f"I could not read this answer ({exc.__class__.__name__}: {exc})"
        fb.items.append(Item("right" if right else "wrong", f"{q.key}: {message}"))
    known = {q.key for q in questions}
    for key in answers:
        if key not in known and not extra_keys_ok:
            fb.items.append(Item("note", f"{key!r} is not one of the questions ({', '.join(sorted(known))}); "
                                         f"is it a typo?"))
    return fb


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("s").strip())
        except ValueError:
            return None
    return None


def _norm(value: Any) -> str:
    return " ".join(str(value).strip().lower().replace("_", " ").replace("-", " ").split())


def equals(expected: Any, why: str = "", hint: str = "", tolerance: float = 1e-6) -> Grader:
    """Right when the answer equals ``expected`` (numbers within ``tolerance``; text case-insensitively)."""

    def grade(answer: Any) -> tuple[bool, str]:
        if isinstance(expected, (int, float)) and not isinstance(expected, bool):
            got = _number(answer)
            if got is None:
                return False, f"I expected a number here, got {answer!r}."
            ok = math.isclose(got, float(expected), abs_tol=tolerance)
        elif isinstance(expected, (list, tuple)):
            if not isinstance(answer, (list, tuple)) or len(answer) != len(expected):
                return False, (f"I expected a list of {len(expected)} items. " + hint).strip()
            ok = all(equals(e, tolerance=tolerance)(a)[0] for e, a in zip(expected, answer))
        elif isinstance(expected, str):
            ok = _norm(answer) == _norm(expected)
        else:
            ok = answer == expected
        if ok:
            return True, ("Right. " + why).strip()
        return False, ("Not quite. " + hint).strip()
    return grade


def one_of(words: Iterable[str], why: str = "", hint: str = "") -> Grader:
    """Right when the answer (text, a class or an exception) mentions one of ``words``."""
    words = [w.lower() for w in words]

    def grade(answer: Any) -> tuple[bool, str]:
        if isinstance(answer, type):
            text = answer.__name__
        elif isinstance(answer, BaseException):
            text = type(answer).__name__ + " " + str(answer)
        else:
            text = str(answer)
        if any(w in text.lower() for w in words):
            return True, ("Right. " + why).strip()
        return False, ("Not quite. " + hint).strip()
    return grade


def packet(why: str = "", layer: str = "engine.io", **want: Any) -> Grader:
    """Right when the answer is a raw packet that decodes to the wanted fields (eio, sio, nsp, ack, event, args)."""

    def grade(answer: Any) -> tuple[bool, str]:
        if not isinstance(answer, str):
            return False, f"I expected the raw packet as a string, like '42[\"hi\"]', got {answer!r}."
        text = answer.strip()
        got = explain(text, layer=layer)
        if got.error:
            hint = ""
            if layer == "engine.io" and text[:1] in "0123456" and explain(text, layer="socket.io").error is None:
                hint = " It looks like a Socket.IO packet without the Engine.IO '4' (message) in front."
            return False, f"Not quite: {text!r} is not a valid packet ({got.error}).{hint}"
        wrong = _differences(got, want)
        if wrong and layer == "engine.io" and "eio" in want:
            bare = explain(text, layer="socket.io")
            if bare.error is None and not _differences(bare, {k: v for k, v in want.items() if k != "eio"}):
                return False, (f"Almost: {text!r} is the Socket.IO packet, but on the wire it travels inside an "
                               f"Engine.IO MESSAGE: put a '4' in front.")
        if wrong:
            return False, "Not quite: " + "; ".join(wrong) + "."
        return True, ("Right. " + why).strip()
    return grade


def _differences(got, want: dict) -> list[str]:
    out = []
    for name, value in want.items():
        have = getattr(got, name)
        if name == "nsp":
            have = have or "/"
        if have != value:
            out.append(f"{name} is {have!r}, expected {value!r}")
    return out


def check(answers: Any, expected: dict, title: str = "Self-check") -> Feedback:
    """A general self-check: each answer must equal ``expected[key]`` (numbers, text, lists)."""
    return _run(title, answers, [Question(k, v if callable(v) else equals(v)) for k, v in expected.items()])


# ---------------------------------------------------------------- lesson 05: packet numbers

#: Packets for the decoding exercise (lesson 05); any valid packet can be checked.
DECODING_EXERCISE = (
    "3",
    "41",
    '432["ok"]',
    '42/chat,["hi","all"]',
    "40/admin,{\"token\":\"s3cret\"}",
    '451-["upload",{"_placeholder":true,"num":0}]',
    "6",
)

_FIELDS = ("eio", "sio", "nsp", "ack", "event", "attachments")
_SIO_ALIASES = {"error": "connect_error", "connect error": "connect_error", "binary event": "binary_event",
                "binary ack": "binary_ack", "connecterror": "connect_error", "binaryevent": "binary_event",
                "binaryack": "binary_ack"}


def _type_name(value: Any, names: tuple[str, ...]) -> str | None:
    """'MESSAGE', 'message', 4 or '4' -> 'message' (None if it is not a type of this layer)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    text = _norm(value)
    if text.isdigit() and int(text) < len(names):
        return names[int(text)]
    text = _SIO_ALIASES.get(text, text).replace(" ", "_")
    return text if text in names else None


def _parse_words(text: str) -> dict:
    """'message event' -> {'eio': 'message', 'sio': 'event'} (the two layers' names never overlap)."""
    out: dict = {}
    norm = _norm(text).replace(",", " ").replace("+", " ")
    for two in ("binary event", "binary ack", "connect error"):
        norm = norm.replace(two, two.replace(" ", "_"))
    for word in norm.split():
        if "eio" not in out and _type_name(word, EIO_TYPES):
            out["eio"] = word
        elif "sio" not in out and _type_name(word, SIO_TYPES):
            out["sio"] = word
    return out


def _decode_one(raw: Any, answer: Any) -> Item:
    shown = raw if isinstance(raw, str) else repr(raw)
    truth = explain(raw)
    if answer is None:
        return Item("todo", f"{shown}: not answered yet")
    if truth.eio is None:  # not a valid packet at all
        if _norm(answer) in ("invalid", "error", "false", "none of them"):
            return Item("right", f"{shown}: right, it is not a valid packet ({truth.error}).")
        return Item("wrong", f"{shown}: this one is not a valid packet: {truth.error}")
    if isinstance(answer, str):
        given = _parse_words(answer)
        if not given:
            return Item("wrong", f"{shown}: I could not find a packet type in {answer!r}; write e.g. "
                                 f"'message event' or a dict like {{'eio': 'message', 'sio': 'event'}}.")
    elif isinstance(answer, dict):
        given = dict(answer)
    else:
        return Item("wrong", f"{shown}: write the answer as text ('message ack') or a dict "
                             f"({{'eio': 'message', 'sio': 'ack', 'ack': 2}}), not a {type(answer).__name__}.")
    unknown = [k for k in given if k not in _FIELDS]
    problems, notes = [], []
    if unknown:
        notes.append(f"I ignored {', '.join(map(repr, unknown))} (the fields are {', '.join(_FIELDS)})")
    # the fields this packet has, and so the answer needs
    needed = {"eio": truth.eio}
    if truth.sio is not None:
        needed["sio"] = truth.sio
    if truth.nsp not in (None, "/"):
        needed["nsp"] = truth.nsp
    if truth.ack is not None:
        needed["ack"] = truth.ack
    attachments = truth.field("attachments")
    if attachments is not None:
        needed["attachments"] = int(attachments.text.rstrip("-"))
    text = raw if isinstance(raw, str) else ""
    for name in _FIELDS:
        if name not in given:
            continue
        have = given[name]
        if name == "eio":
            ok = _type_name(have, EIO_TYPES) == truth.eio
            hint = (f"the first character {text[:1]!r} is the Engine.IO type: "
                    f"{EIO_TYPES.index(truth.eio)} = {truth.eio.upper()}") if text[:1].isdigit() else \
                "a binary attachment travels as an Engine.IO MESSAGE"
        elif name == "sio":
            want = truth.sio
            ok = want is not None and _type_name(have, SIO_TYPES) == want
            if want is None:
                hint = (f"{truth.eio.upper()} is an Engine.IO packet of its own: it carries no Socket.IO packet"
                        if truth.eio != "message" else "this message carries binary data, not a Socket.IO packet")
            else:
                hint = (f"the character after the Engine.IO '4' is the Socket.IO type: "
                        f"{SIO_TYPES.index(want)} = {want.upper()}")
            if ok and _norm(have) == "error":
                notes.append("the seed calls type 4 ERROR; protocol v5 names it CONNECT_ERROR")
        elif name == "nsp":
            ok = str(have).strip() == (truth.nsp or "/") or (truth.nsp in (None, "/") and _norm(have) in ("", "/"))
            hint = ("a namespace is written as '/name,' right after the type (and attachment count); "
                    "when none is written it is '/'") if truth.sio else "only Socket.IO packets have a namespace"
        elif name == "ack":
            ok = (truth.ack is None and have in (None, False)) or \
                (_number(have) is not None and truth.ack is not None and _number(have) == truth.ack)
            hint = ("the digits just before the JSON data are the ack id" if truth.ack is not None
                    else "this packet carries no ack id (no digits between the type/namespace and the data)")
        elif name == "event":
            ok = have == truth.event
            hint = ("the event name is the first element of the JSON array" if truth.event is not None
                    else "only EVENT and BINARY_EVENT packets name an event")
        else:  # attachments
            want_n = needed.get("attachments", 0)
            ok = _number(have) == want_n
            hint = ("the number before '-' counts the binary attachments that follow" if want_n
                    else "no '<n>-' is written, so there are no attachments")
        if not ok:
            problems.append(f"{name}={have!r} is not right: {hint}")
    missing = [n for n in needed if n not in given]
    meaning = " ".join(p.upper() for p in (truth.eio, truth.sio) if p)
    if problems:
        return Item("wrong", f"{shown}: not quite. " + "; ".join(problems) + "."
                    + (f" (Also: {'; '.join(notes)}.)" if notes else ""))
    if missing:
        how = " (write the answer as a dict to give them)" if isinstance(answer, str) else ""
        return Item("wrong", f"{shown}: good so far; this packet also has "
                    + ", ".join(missing) + f" to decode{how}." + (f" ({'; '.join(notes)}.)" if notes else ""))
    return Item("right", f"{shown}: right, {meaning}." + (f" ({'; '.join(notes)}.)" if notes else ""))


def check_decoding(answers: Any) -> Feedback:
    """Lesson 05: ``answers`` maps raw packets to what you decoded.

    An answer is text naming the types (``'message ack'``) or a dict with any of ``eio``,
    ``sio``, ``nsp``, ``ack``, ``event``, ``attachments``; ``None`` means not answered yet.
    Every field a packet has (its ack id, a namespace other than '/', attachments) must be given.
    """
    fb = Feedback("Decoding packets")
    if answers is None:
        answers = {raw: None for raw in DECODING_EXERCISE}
    if not isinstance(answers, dict):
        fb.items.append(Item("note", "I expected a dict {raw packet: your answer}, like "
                                     "{'3': 'pong', '41': {'eio': 'message', 'sio': 'disconnect'}}."))
        return fb
    for raw, answer in answers.items():
        fb.items.append(_decode_one(raw, answer))
    return fb


# ---------------------------------------------------------------- lesson 06: acks and binary


def check_acks(answers: Any) -> Feedback:
    """Lesson 06: ``reply_to_423`` (the raw ACK for ``423["add",1,2]`` when the handler returns 3),
    ``frames_for_two_blobs`` (WebSocket frames for ``emit("photos", (b"a", b"b"))``),
    ``call_without_answer`` (what ``await client.call(...)`` does when no ACK comes in time)."""
    return _run("Acknowledgements and binary data", answers, [
        Question("reply_to_423", packet(
            "The ACK repeats the ack id 3 and carries the handler's return value as its arguments.",
            eio="message", sio="ack", ack=3, nsp="/", args=[3])),
        Question("frames_for_two_blobs", equals(
            3, "One BINARY_EVENT '452-[\"photos\",{placeholder 0},{placeholder 1}]' and one binary frame per "
               "attachment.",
            "Count the text frame with the placeholders, then one frame for each bytes argument.")),
        Question("call_without_answer", one_of(
            ["timeouterror", "timeout"],
            "call() raises socketio.exceptions.TimeoutError; the event is on the wire with its ack id, "
            "and no ACK ever comes back.",
            "Look at the cell where nobody answered: what did call() raise?")),
    ])


# ---------------------------------------------------------------- lesson 07: namespaces and rooms


def check_rooms(answers: Any) -> Feedback:
    """Lesson 07. Four clients (alice, bob, carol, dave) on '/'; alice, bob and carol are in room
    'kitchen'. ``to_kitchen_skipping_alice``: packets the server sends for
    ``emit("dinner", to="kitchen", skip_sid=alice_sid)``; ``to_everyone``: for ``emit("news")``;
    ``connects_for_two_namespaces`` and ``sessions_for_two_namespaces``: CONNECT packets sent and
    Engine.IO sessions opened by a client with ``namespaces=["/", "/chat"]``; ``chat_event_raw``:
    the raw packet for ``emit("hi", namespace="/chat")``."""
    return _run("Namespaces and rooms", answers, [
        Question("to_kitchen_skipping_alice", equals(
            2, "bob and carol each get their own copy; alice is skipped and dave is not in the room.",
            "A room broadcast is one packet per member of the room, minus the skipped sid.")),
        Question("to_everyone", equals(
            4, "Without to=, emit() goes to every client connected to the namespace: one packet each.",
            "Count the clients connected to '/'.")),
        Question("connects_for_two_namespaces", equals(
            2, "One CONNECT per namespace: '40{}' and '40/chat,{}'.",
            "Each namespace is joined with its own CONNECT packet.")),
        Question("sessions_for_two_namespaces", equals(
            1, "Namespaces are multiplexed over one Engine.IO session: one sid, one WebSocket.",
            "Look at the sid of the two CONNECT packets in the trace.")),
        Question("chat_event_raw", packet(
            "The namespace goes between the type and the data, followed by a comma.",
            eio="message", sio="event", nsp="/chat", event="hi", args=[], ack=None)),
    ])


# ---------------------------------------------------------------- lesson 10: reconnection


def check_reconnection(answers: Any) -> Feedback:
    """Lesson 10, with python-socketio's defaults (reconnection_delay=1, reconnection_delay_max=5,
    randomization_factor=0.5): ``base_waits`` (the first four waits before randomisation, in s),
    ``jitter_seconds`` (how far each wait may move either way), ``python_emit_while_disconnected``
    and ``js_emit_while_disconnected`` (what emit() does in each client while disconnected)."""
    return _run("Reconnection and buffering", answers, [
        Question("base_waits", equals(
            [1, 2, 4, 5], "The wait doubles from reconnection_delay and stops at reconnection_delay_max.",
            "Start at 1 s and double, but never above the maximum of 5 s.")),
        Question("jitter_seconds", equals(
            0.5, "python-socketio adds randomization_factor * (2*random() - 1) seconds: up to ±0.5 s "
                 "(the JavaScript client moves the wait by up to 50 % of itself instead).",
            "Read _handle_reconnect in python-socketio's async_client.py: what is added to the delay?")),
        Question("python_emit_while_disconnected", one_of(
            ["badnamespaceerror"],
            "emit() raises socketio.exceptions.BadNamespaceError: nothing is queued.",
            "Try it: what did emit() raise while the server was down?")),
        Question("js_emit_while_disconnected", one_of(
            ["buffer", "queue", "sendbuffer"],
            "socket.io-client keeps it in socket.sendBuffer and sends it after the reconnection "
            "(unless socket.volatile was used).",
            "The JavaScript client's docs, 'Offline behavior', say what happens to such events.")),
    ])


__all__ = ["Feedback", "Item", "Question", "check", "equals", "one_of", "packet", "DECODING_EXERCISE",
           "check_decoding", "check_acks", "check_rooms", "check_reconnection", "self_check"]


def self_check(answer: Any, check: Callable[[Any], bool] | Any, *, hint: str = "", why: str = "") -> bool | None:
    """Tell the learner kindly whether ``answer`` is right; ``None`` means "not answered yet".

    ``check`` is the expected value or a function of the answer that returns True when it is right.
    Never raises: a wrong answer is a hint, not an error.
    """
    if answer is None:
        print("Not answered yet: replace None with your answer and run the cell again." +
              (f"\nHint: {hint}" if hint else ""))
        return None
    try:
        ok = bool(check(answer)) if callable(check) else answer == check
    except Exception as exc:  # a malformed answer is a hint too
        ok = False
        hint = f"{hint} (checking your answer raised {exc.__class__.__name__}: {exc})".strip()
    if ok:
        print("Right! " + why if why else "Right!")
    else:
        print(f"Not quite: {answer!r} is not it." + (f"\nHint: {hint}" if hint else ""))
    return ok
