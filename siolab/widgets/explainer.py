"""The packet explainer: type or paste a packet, see ``siolab.explain()``'s breakdown with
each field's characters highlighted (``Field.start``/``end`` are spans into the raw text).

The kernel explains; the front end only paints the spans (with ``textContent``).
"""
from __future__ import annotations

from typing import Any

import anywidget
import traitlets

from ..protocol import RECORD_SEPARATOR, Explanation, explain
from ._common import STATIC, css, safe

MAX_INPUT = 20_000
SEPARATOR_SPELLINGS = ("\\x1e", "\\u001e", "␞")


def packet_from_input(text: str) -> str:
    """What the learner typed, with the record separator spelled ``\\x1e`` or ``␞`` made real."""
    for spelling in SEPARATOR_SPELLINGS:
        text = text.replace(spelling, RECORD_SEPARATOR)
    return text


def explanation_to_dict(e: Explanation) -> dict[str, Any]:
    """A JSON-ready form of an Explanation (fields with their spans; sub-packets of a polling body)."""
    return {
        "raw": safe(e.raw if isinstance(e.raw, str) else repr(e.raw)),
        "eio": e.eio, "sio": e.sio, "nsp": safe(e.nsp), "ack": e.ack, "event": safe(e.event), "error": safe(e.error),
        "fields": [{"name": f.name, "text": safe(f.text), "meaning": safe(f.meaning), "start": f.start, "end": f.end}
                   for f in e.fields],
        "packets": [explanation_to_dict(p) for p in e.packets],
        "summary": safe(str(e)),
    }


class Explainer(anywidget.AnyWidget):
    """A text box that explains the packet typed in it: ``Explainer(initial='421["chat","hi"]')``."""

    _esm = STATIC / "explainer.js"
    _css = css("explainer.css")

    value = traitlets.Unicode("").tag(sync=True)
    layer = traitlets.Unicode("engine.io").tag(sync=True)
    explanation = traitlets.Dict().tag(sync=True)

    def __init__(self, initial: str = "", *, layer: str = "engine.io", **kwargs: Any) -> None:
        super().__init__(value=initial, layer=layer, **kwargs)
        self._update()

    @traitlets.validate("layer")
    def _check_layer(self, proposal):
        if proposal["value"] not in ("engine.io", "socket.io"):
            raise traitlets.TraitError("layer is 'engine.io' or 'socket.io'")
        return proposal["value"]

    @traitlets.observe("value", "layer")
    def _on_change(self, _change) -> None:
        self._update()

    def _update(self) -> None:
        if len(self.value) > MAX_INPUT:
            self.explanation = {"raw": "", "fields": [], "packets": [], "summary": "",
                                "error": f"that is {len(self.value)} characters: the explainer takes up to {MAX_INPUT}"}
            return
        self.explanation = explanation_to_dict(self.explain())

    def explain(self) -> Explanation:
        """``siolab.explain()`` of what is in the box."""
        return explain(packet_from_input(self.value), layer=self.layer)

    def __repr__(self) -> str:
        return f"<Explainer {self.value!r}>"
