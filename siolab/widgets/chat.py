"""The seed's chat, rebuilt with widgets: one panel per user, every message a real ``emit``.

The server side mirrors the seed (a Node.js server)::

    socket.on('newClient', () => io.emit('initialChatList', messageArr));
    socket.on('message', ({ message }) => {
        messageArr.push(`${message}`);
        io.emit('message', messageArr);        // the whole list, to everyone
    });

with one change: each entry also names its author (``{"user": ..., "message": ...}``), so the
panels can say who wrote what. Each client does what the seed's React app does: on
``connect`` it emits ``newClient``; ``initialChatList`` and ``message`` replace its list.

``chat = await chat(lab, ["alice", "bob"])`` registers the handlers on ``lab.server``,
connects the clients through the tap and returns the widget; ``await chat.send("alice", "hi")``
does what clicking Send does. Optional ``rooms=[...]`` adds a room selector per panel.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterable

import anywidget
import traitlets

from ..trace import Record
from ._common import STATIC, css, safe

SHOW = 200          # messages a panel shows (the kernel keeps them all in ``messages``)
MAX_TEXT = 10_000   # characters accepted from the page's input box
CONNECTED = "connected"


def _entry(item: Any) -> dict[str, str]:
    """One chat entry as a panel shows it (a seed-style plain string has no author)."""
    if isinstance(item, dict):
        return {"user": safe(str(item.get("user", ""))), "message": safe(str(item.get("message", "")))}
    return {"user": "", "message": safe(str(item))}


class ChatServer:
    """The seed's chat server, on a python-socketio AsyncServer."""

    def __init__(self, server: Any, rooms: Iterable[str] | None = None) -> None:
        self.server = server
        self.rooms = list(rooms) if rooms else None
        # the seed's messageArr: one list (or one per room)
        self.messages: dict[str | None, list[dict]] = {r: [] for r in self.rooms} if self.rooms else {None: []}
        self.room_of: dict[str, str] = {}

    def install(self) -> None:
        """Register the handlers on the server (replacing handlers of the same events)."""
        self.server.on("newClient", self.on_new_client)
        self.server.on("message", self.on_message)
        if self.rooms:
            self.server.on("join", self.on_join)

    def _room(self, data: Any) -> str:
        room = data.get("room") if isinstance(data, dict) else None
        return room if room in self.rooms else self.rooms[0]

    async def on_new_client(self, sid: str, data: Any = None) -> None:
        if self.rooms is None:
            # as in the seed: io.emit, so every client gets the list again, not only the new one
            await self.server.emit("initialChatList", self.messages[None])
            return
        await self._move(sid, self._room(data))

    async def on_join(self, sid: str, data: Any = None) -> None:
        await self._move(sid, self._room(data))

    async def _move(self, sid: str, room: str) -> None:
        old = self.room_of.get(sid)
        if old is not None and old != room:
            await self.server.leave_room(sid, old)
        await self.server.enter_room(sid, room)
        self.room_of[sid] = room
        await self.server.emit("initialChatList", self.messages[room], to=sid)

    async def on_message(self, sid: str, data: Any = None) -> None:
        text = data.get("message") if isinstance(data, dict) else data
        user = data.get("user") if isinstance(data, dict) else None
        room = self.room_of.get(sid) if self.rooms else None
        if self.rooms and room is None:
            room = self.rooms[0]
        messages = self.messages.setdefault(room, [])
        messages.append({"user": "" if user is None else str(user), "message": f"{text}"})
        await self.server.emit("message", messages, to=room)


class ChatWidget(anywidget.AnyWidget):
    """Chat panels side by side, one per user; kernel-side state in ``messages``, ``state``, ``clients``.

    ``await chat.send(user, text)`` emits like the Send button and returns True once every user in
    the room shows the message (False after ``timeout``).
    """

    _esm = STATIC / "chat.js"
    _css = css("chat.css")

    users = traitlets.List(traitlets.Unicode()).tag(sync=True)
    rooms = traitlets.List(traitlets.Unicode()).tag(sync=True)
    panels = traitlets.Dict().tag(sync=True)

    def __init__(self, lab: Any, users: Iterable[str], *, rooms: Iterable[str] | None = None) -> None:
        users = [str(u) for u in users]
        if not users or len(set(users)) != len(users):
            raise ValueError("give one or more distinct user names")
        rooms = [str(r) for r in rooms] if rooms else []
        super().__init__(users=users, rooms=rooms)
        self.lab = lab
        self.chat_server = ChatServer(lab.server, rooms or None)
        self.clients: dict[str, Any] = {}
        self.messages: dict[str, list[dict]] = {u: [] for u in users}
        self.state: dict[str, str] = {u: "not connected" for u in users}
        self.room: dict[str, str | None] = {u: (rooms[0] if rooms else None) for u in users}
        self.sent: dict[str, str | None] = {u: None for u in users}
        self.received: dict[str, str | None] = {u: None for u in users}
        self.lists: dict[str, int] = {u: 0 for u in users}   # lists received (initialChatList or message)
        self.errors: list[str] = []
        self._tasks: set[asyncio.Future] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future]] = []
        self.on_msg(self._on_custom)
        self._refresh()

    # ------------------------------------------------------------ setup
    async def start(self, timeout: float = 5.0) -> "ChatWidget":
        """Install the server handlers; connect the users through the tap, one by one, each until its first list."""
        self.chat_server.install()
        for name in self.users:
            if name in self.lab.clients:
                raise ValueError(f"this lab already has a client named {name!r}: start a new lab "
                                 f"(re-run the cell with siolab.start) before making the chat again")
            client = await self.lab.client(name, connect=False)
            self._attach(name, client)
            self.clients[name] = client
            self._set_state(name, "connecting")
            await self.lab.connect(client)
            # one user at a time, each with its first list before the next joins: a trace you can predict
            await self._wait(lambda name=name: self.lists[name] > 0, timeout)
        self._refresh()
        return self

    def _attach(self, name: str, client: Any) -> None:
        async def connect() -> None:
            self._set_state(name, CONNECTED)
            # as in the seed's App: socket.on('connect', () => socket.emit('newClient'))
            if self.rooms:
                await client.emit("newClient", {"room": self.room[name]})
            else:
                await client.emit("newClient")

        async def disconnect(*_reason: Any) -> None:
            self._set_state(name, "disconnected")

        async def connect_error(data: Any = None) -> None:
            self._set_state(name, safe(f"refused: {data}"))

        async def got_list(messages: Any = None) -> None:
            self._set_messages(name, messages)

        client.on("connect", connect)
        client.on("disconnect", disconnect)
        client.on("connect_error", connect_error)
        client.on("initialChatList", got_list)
        client.on("message", got_list)

    # ------------------------------------------------------------ state
    def _set_state(self, name: str, state: str) -> None:
        self.state[name] = state
        self._refresh()
        self._wake()

    def _set_messages(self, name: str, messages: Any) -> None:
        items = messages if isinstance(messages, list) else []
        self.messages[name] = [_entry(m) for m in items]
        self.lists[name] += 1
        found = self._newest(lambda r: r.client == name and r.dir == "s2c" and r.event in ("message",
                                                                                          "initialChatList"))
        if found is not None:
            self.received[name] = found.raw
        self._refresh()
        self._wake()

    def _newest(self, where: Callable[[Record], bool], depth: int = 64) -> Record | None:
        """The newest matching record among the trace's last ``depth`` (cheap at any trace size)."""
        trace = self.lab.trace
        for i in range(1, min(depth, len(trace)) + 1):
            record = trace[-i]
            if record.kind == "packet" and where(record):
                return record
        return None

    def _transport(self, name: str) -> str | None:
        client = self.clients.get(name)
        try:
            return client.transport() if client is not None and client.connected else None
        except Exception:
            return None

    def _refresh(self) -> None:
        self.panels = {u: {"messages": self.messages[u][-SHOW:], "hidden": max(0, len(self.messages[u]) - SHOW),
                           "state": self.state[u], "transport": self._transport(u), "room": self.room[u],
                           "sent": self.sent[u], "received": self.received[u]} for u in self.users}

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        if predicate():
            return True
        future = asyncio.get_running_loop().create_future()
        item = (predicate, future)
        self._waiters.append(item)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            if item in self._waiters:
                self._waiters.remove(item)

    def _wake(self) -> None:
        for predicate, future in tuple(self._waiters):
            if not future.done() and predicate():
                future.set_result(True)

    # ------------------------------------------------------------ actions
    async def send(self, user: str, text: str, *, timeout: float = 5.0) -> bool:  # type: ignore[override]
        """Emit ``message`` as ``user`` (what the Send button does); True once every user in the room shows it.

        (This replaces ipywidgets' ``Widget.send``; the chat needs no custom messages to the page.)
        """
        client = self.clients.get(user)
        if client is None:
            raise ValueError(f"no user {user!r} in this chat (users: {', '.join(self.users)})")
        text = str(text)
        if not client.connected:
            self.errors.append(f"{user}: not connected, message not sent")
            return False
        room = self.room[user]
        recipients = [u for u in self.users if self.state[u] == CONNECTED and self.room[u] == room]
        entry = {"user": user, "message": text}
        before = {u: self.messages[u].count(entry) for u in recipients}
        mark = self.lab.trace.now()
        await client.emit("message", {"message": text, "user": user})
        delivered = await self._wait(lambda: all(self.messages[u].count(entry) > before[u] for u in recipients),
                                     timeout)
        # the broadcast came back, so the tap has recorded what went out
        sent = self._newest(lambda r: r.client == user and r.dir == "c2s" and r.event == "message"
                            and r.t >= mark, depth=512)
        if sent is not None:
            self.sent[user] = sent.raw
        self._refresh()
        return delivered

    async def set_room(self, user: str, room: str, *, timeout: float = 5.0) -> bool:
        """Move ``user`` to another room (emits ``join``); True once the room's list arrived."""
        if room not in self.rooms:
            raise ValueError(f"no room {room!r} (rooms: {', '.join(self.rooms) or 'none'})")
        count = self.lists[user]
        self.room[user] = room
        await self.clients[user].emit("join", {"room": room})
        done = await self._wait(lambda: self.lists[user] > count, timeout)
        self._refresh()
        return done

    def _run(self, coroutine) -> None:
        # called from the page's button callbacks, on the loop: schedule, never block
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(f"{task.exception().__class__.__name__}: {task.exception()}")

    def _on_custom(self, _widget, content, _buffers) -> None:
        if not isinstance(content, dict) or content.get("user") not in self.users:
            return
        user = content["user"]
        if content.get("type") == "send" and isinstance(content.get("text"), str):
            text = content["text"][:MAX_TEXT]
            if text.strip():
                self._run(self.send(user, text))
        elif content.get("type") == "room" and content.get("room") in self.rooms:
            self._run(self.set_room(user, content["room"]))

    # ------------------------------------------------------------ self-checks for the lesson
    def fanout(self) -> int | None:
        """How many ``message`` broadcasts the server sent for the newest chat message (from the trace)."""
        said = self.lab.trace.find(kind="packet", dir="c2s", event="message")
        if not said:
            return None
        t0 = said[-1].t
        return len({r.client for r in self.lab.trace.find(kind="packet", dir="s2c", event="message",
                                                          where=lambda r: r.t >= t0)})

    def check_fanout(self, answer: int | None) -> str:
        """Self-check: how many ``42["message",…]`` packets leave the server for one chat message?"""
        truth = self.fanout()
        if answer is None:
            text = "Not answered yet: set `answer` to a number and run the cell again."
        elif truth is None:
            text = "Send a message first (await chat.send(...)), then check again."
        elif answer == truth:
            text = (f"Right: {truth}. io.emit sends one packet to every connected client, the sender "
                    f"included, and each carries the whole list.")
        else:
            text = (f"Not quite: you said {answer}. Count the s2c rows with 42[\"message\",…] after the "
                    f"last c2s one in the trace view: one per connected client.")
        print(text)
        return text

    def check_sent_raw(self, user: str, raw: str | None) -> str:
        """Self-check: is ``raw`` the exact text of a ``message`` event ``user``'s client sent?"""
        sent = self.lab.trace.raws(client=user, dir="c2s", event="message")
        if raw is None:
            text = "Not answered yet: set the variable to the raw packet text and run the cell again."
        elif raw in sent:
            text = (f"Right: {raw!r} is what {user} sent: 4 (Engine.IO message) + 2 (Socket.IO EVENT) + "
                    f"the JSON array [event name, data].")
        elif not sent:
            text = f"{user} has not sent a message yet: try await chat.send({user!r}, 'hello') first."
        else:
            text = (f"Not quite: {user}'s client sent {sent[-1]!r} last. Hint: "
                    f"lab.trace.raws(client={user!r}, dir='c2s', event='message').")
        print(text)
        return text

    def __repr__(self) -> str:
        return f"<ChatWidget {', '.join(self.users)}>"


async def chat(lab: Any, users: Iterable[str] = ("alice", "bob"), *, rooms: Iterable[str] | None = None,
               timeout: float = 5.0) -> ChatWidget:
    """The seed's chat in the lab: server handlers on ``lab.server``, one connected client and panel per user."""
    widget = ChatWidget(lab, users, rooms=rooms)
    return await widget.start(timeout=timeout)
