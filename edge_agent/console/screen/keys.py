"""The key/page state machine: one key in, the new state and maybe an action out.

Pure, so every key can be tested without a terminal. Pages are single letters (a technician
on a 9600-baud line types one key, not a menu walk); the register read form takes digits. A
key that does nothing is never silent: the hint line says so and where the keys are listed.
Keys arrive as curses names them: a character (``"v"``, ``"\\t"``) or ``"KEY_UP"`` and the like.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PAGES = {"o": "overview", "v": "values", "b": "buses", "r": "read", "e": "events",
         "n": "network", "?": "help", "h": "help"}
FIELDS = ("bus", "unit", "function", "register", "count")
LIMITS = {"unit": 247, "function": 4, "register": 65535, "count": 125}
SCROLL = {"KEY_DOWN": 1, "j": 1, "KEY_UP": -1, "k": -1, "KEY_NPAGE": 10, "KEY_PPAGE": -10,
          " ": 10}
#: the values page turns pages instead of scrolling: a page of channels is a screen whose full
#: repaint is bounded however many channels the station has (see :mod:`.pages`)
PAGE_TURN = {"KEY_NPAGE": 1, "+": 1, " ": 1, "KEY_PPAGE": -1, "-": -1}
ENTER = ("\n", "\r", "KEY_ENTER")
BACKSPACE = ("KEY_BACKSPACE", "\x7f", "\x08", "KEY_DC")


@dataclass(slots=True)
class Form:
    """The register read form: the bus (an index into the config's buses) and four numbers
    kept as the digits typed."""

    bus: int = 0
    unit: str = "1"
    function: str = "3"
    register: str = "0"
    count: str = "2"
    field: int = 1  # index into FIELDS

    def value(self, name: str) -> str:
        return str(self.bus) if name == "bus" else str(getattr(self, name))

    def numbers(self) -> tuple[int, int, int, int] | str:
        """(unit, function, register, count), or what is wrong with them."""
        try:
            unit, function = int(self.unit), int(self.function)
            register, count = int(self.register), int(self.count)
        except ValueError:
            return "every field needs a number"
        if not 1 <= unit <= 247:
            return f"unit {unit}: unit ids are 1..247"
        if function not in (3, 4):
            return f"function {function}: 3 (holding) or 4 (input registers)"
        if not 1 <= count <= 40:
            return f"count {count}: 1..40 registers fit the page"
        if register + count > 0x10000:  # digits only, so never negative
            return f"register {register}: registers are 0..65535 ({count} from there)"
        return unit, function, register, count


@dataclass(slots=True)
class Ui:
    """Which page, its scroll, the hint line, the form; ``quit`` ends the program."""

    page: str = "overview"
    hint: str = ""
    scroll: int = 0
    form: Form = field(default_factory=Form)
    events_all: bool = False
    values_page: int = 0  # 0-based; the values page clamps it to the pages there are
    quit: bool = False


def _name(key: str) -> str:
    if len(key) == 1 and not key.isprintable():
        return f"^{chr(ord(key) + 64)}" if ord(key) < 32 else repr(key)
    return key


def handle(ui: Ui, key: str, n_buses: int) -> str | None:
    """Apply ``key``; the action it asks of the source (``scan``, ``read``, ``network``) or
    None. ``n_buses`` is how many buses the form may choose from."""
    ui.hint = ""
    if key == "KEY_RESIZE":
        return None
    if ui.page == "read" and _form_key(ui, key, n_buses):
        return "read" if key in ENTER else None
    if key in ("q", "Q"):
        ui.quit = True
        return None
    if key in PAGES:
        if PAGES[key] != ui.page:
            ui.page, ui.scroll = PAGES[key], 0
        return "network" if ui.page == "network" else None
    if ui.page == "values" and key in PAGE_TURN:  # past the last: the page says so
        if ui.values_page + PAGE_TURN[key] < 0:
            ui.hint = "page 1 is the first; + turns on"
        ui.values_page = max(0, ui.values_page + PAGE_TURN[key])
        return None
    if key in SCROLL and ui.page != "read":
        ui.scroll = max(0, ui.scroll + SCROLL[key])
        return None
    if ui.page == "buses" and key == "s":
        return "scan"
    if ui.page == "buses" and key == "\t" and n_buses:
        ui.form.bus = (ui.form.bus + 1) % n_buses
        return None
    if ui.page == "events" and key == "a":
        ui.events_all = not ui.events_all
        return None
    if ui.page == "network" and key == "t":
        return "network"
    ui.hint = f"key {_name(key)} does nothing on this page; ? lists the keys"
    return None


def _form_key(ui: Ui, key: str, n_buses: int) -> bool:
    """A key the read form takes (True), or one for the page keys (False)."""
    form = ui.form
    name = FIELDS[form.field]
    if key in ("\t", "KEY_DOWN"):
        form.field = (form.field + 1) % len(FIELDS)
    elif key in ("KEY_BTAB", "KEY_UP"):
        form.field = (form.field - 1) % len(FIELDS)
    elif key in ENTER:
        pass
    elif name == "bus" and key in (" ", "+", "-", "KEY_RIGHT", "KEY_LEFT"):
        step = -1 if key in ("-", "KEY_LEFT") else 1
        form.bus = (form.bus + step) % max(1, n_buses)
    elif name != "bus" and key.isdigit() and len(key) == 1:
        text = (getattr(form, name) + key).lstrip("0") or "0"
        if int(text) <= LIMITS[name]:
            setattr(form, name, text)
        else:
            ui.hint = f"{name} is at most {LIMITS[name]}"
    elif name != "bus" and key in BACKSPACE:
        setattr(form, name, getattr(form, name)[:-1])
    else:
        return False
    return True
