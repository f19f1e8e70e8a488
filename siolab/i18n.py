"""The language siolab speaks to a learner: English, or Korean after ``siolab.set_language("ko")``.

Messages are looked up in gettext catalogs (``siolab/locale/<lang>/LC_MESSAGES/siolab.mo``, compiled
from the ``.po`` files by ``make catalogs``) when they are shown, not when a record is made: a trace
recorded in one language reads in the other, and JSON Lines files stay English. Text from the wire is
never passed through here. ``SIOLAB_LANG=ko`` in the environment sets the language at import.
"""
from __future__ import annotations

import gettext as _gettext
import os
from functools import lru_cache
from pathlib import Path

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "ko")
_language = "en"


def set_language(lang: str) -> None:
    """Show siolab's explanations, notes, views and findings in ``lang`` (``"en"`` or ``"ko"``)."""
    global _language
    code = (lang or "en").split("_")[0].split("-")[0].lower()
    if code not in LANGUAGES:
        raise ValueError(f"siolab speaks {', '.join(LANGUAGES)}; not {lang!r}")
    _language = code


def get_language() -> str:
    """The language set by :func:`set_language` (or ``SIOLAB_LANG``); ``"en"`` by default."""
    return _language


@lru_cache(maxsize=None)
def _catalog(lang: str) -> _gettext.NullTranslations:
    return _gettext.translation("siolab", localedir=str(LOCALE_DIR), languages=[lang], fallback=True)


def gettext(message: str) -> str:
    """``message`` in the current language; itself when the catalog has no translation."""
    if _language == "en" or not message:
        return message
    return _catalog(_language).gettext(message)


_ = gettext


def _from_environment() -> None:
    lang = os.environ.get("SIOLAB_LANG", "")
    if lang:
        try:
            set_language(lang)
        except ValueError:
            pass  # an unknown SIOLAB_LANG leaves English on: importing siolab never fails over it


_from_environment()
