"""A strict value codec between the candidate process and the trusted side.

A candidate's return value crosses a process boundary as a Python literal built from *exact* builtin
types (``repr`` on the candidate's side, ``ast.literal_eval`` on the trusted side), so
the trusted side compares plain data it decoded itself and never calls a method of an object the
candidate made (an object whose ``__eq__`` always returns True cannot cross: it becomes an opaque
handle that equals nothing but itself).

The encoded form uses only lists, str, bytes, int, finite float, bool, None and tags (single-key
dicts), so it is also valid JSON apart from bytes (the runner sends bytes to the host as base64)::

    {"$d": [[k, v], ...]}  dict (any hashable keys)     {"$tu": [...]}  tuple
    {"$s": [...]}           set                         {"$fs": [...]}  frozenset
    {"$c": [re, im]}        complex                     {"$fl": "nan"|"inf"|"-inf"}  non-finite float
    {"$h": n | "name"}      opaque handle (an object of the candidate's, or one of its globals by name)
    {"$ty": "int"}          a builtin type (tests pass ``int``/``str``/... as arguments)

Why literals and not JSON: ``guest.py`` starts in a fresh interpreter for every job, and importing
``json`` (with ``re``, ``enum``, ...) costs more than a small program's whole run. ``repr`` is free there;
the trusted side has ``ast`` loaded already. This file is copied into the sandbox image and imported
there by ``runner.py`` and ``guest.py``: standard library only, and nothing imported at module level.
"""

# No imports at module level, not even ``__future__`` or ``typing``: this module loads in every fresh
# candidate interpreter, where each import is paid on every job. Annotations are therefore strings.
TYPE_CHECKING = False
if TYPE_CHECKING:  # for type checkers only
    from typing import Any, Callable

_INF = float("inf")

MAX_DEPTH = 100
# A reply larger than this is a runaway program, not an answer.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class Unencodable(TypeError):
    """A value with no plain-data form (and no handle table to put it in)."""


def _plain(obj: "Any") -> "Any":
    """Turn numpy scalars/arrays into builtins; honest programs return them often."""
    mod = type(obj).__module__
    if mod == "numpy" or mod.startswith("numpy."):
        tolist = getattr(obj, "tolist", None)
        if callable(tolist):
            return tolist()
    return obj


def encode(obj: "Any", handles: "Callable[[Any], int] | None" = None, _depth: int = 0) -> "Any":
    """JSON-ready form of ``obj``. Subclasses of builtins are read through the base type's own
    methods, so an overridden ``__iter__``/``items``/``__str__`` cannot change what is sent.
    Objects with no plain form become handles when ``handles`` is given, else ``Unencodable``."""
    if _depth > MAX_DEPTH:
        raise Unencodable("value nested too deeply")
    d = _depth + 1
    t = type(obj)
    if obj is None or t is bool or t is str or t is bytes:
        return obj
    if t is int:
        return obj
    if t is float:
        return obj if -_INF < obj < _INF else {"$fl": repr(obj)}
    if t is list:
        return [encode(x, handles, d) for x in obj]
    if t is tuple:
        return {"$tu": [encode(x, handles, d) for x in obj]}
    if t is dict:
        return {"$d": [[encode(k, handles, d), encode(v, handles, d)] for k, v in obj.items()]}
    if t is set or t is frozenset:
        return {"$s" if t is set else "$fs": [encode(x, handles, d) for x in obj]}
    if t is bytearray:
        return bytes(obj)
    if t is complex:
        return {"$c": [encode(obj.real, handles, d), encode(obj.imag, handles, d)]}
    # Subclasses of builtins (namedtuple, OrderedDict, Counter, numpy.float64, IntEnum, ...):
    # read them through the base type's C methods.
    if isinstance(obj, bool):
        return bool(int.__index__(obj))
    if isinstance(obj, int):
        return int.__index__(obj)
    if isinstance(obj, float):
        return encode(float.__float__(obj), handles, d)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, tuple):
        return {"$tu": [encode(x, handles, d) for x in tuple.__iter__(obj)]}
    if isinstance(obj, list):
        return [encode(x, handles, d) for x in list.__iter__(obj)]
    if isinstance(obj, dict):
        return {"$d": [[encode(k, handles, d), encode(v, handles, d)] for k, v in dict.items(obj)]}
    if t is type and obj in _TYPES_BY_VALUE:
        return {"$ty": _TYPES_BY_VALUE[obj]}
    if t is Handle:
        return {"$h": obj.ident}
    plain = _plain(obj)
    if plain is not obj:
        return encode(plain, handles, d)
    if handles is not None:
        return {"$h": handles(obj)}
    raise Unencodable(f"cannot send a {t.__name__!s} value")


class Handle:
    """An opaque reference to an object that lives in the candidate process. Equal only to itself."""

    __slots__ = ("ident", "_remote")

    def __init__(self, ident: int, remote: "Any" = None) -> None:
        self.ident = ident
        self._remote = remote

    def __call__(self, *args: "Any", **kwargs: "Any") -> "Any":
        if self._remote is None:
            raise TypeError("this handle is not callable here")
        return self._remote.call(self.ident, args, kwargs)

    def __bool__(self) -> bool:
        # ``assert candidate(x)`` must not pass because an object of the candidate's is truthy.
        raise TypeError("an object of the candidate program has no truth value here")

    def __repr__(self) -> str:
        return f"<candidate object #{self.ident}>"


def decode(obj: "Any", make_handle: "Callable[[int], Any] | None" = None, _depth: int = 0) -> "Any":
    """Inverse of ``encode``; rejects anything that is not exactly the documented shape."""
    if _depth > MAX_DEPTH + 2:
        raise ValueError("value nested too deeply")
    d = _depth + 1
    t = type(obj)
    if obj is None or t in (bool, int, float, str, bytes):
        return obj
    if t is list:
        return [decode(x, make_handle, d) for x in obj]
    if t is not dict or len(obj) != 1:
        raise ValueError("malformed value")
    (tag, val), = obj.items()
    if tag == "$d" and type(val) is list:
        out = {}
        for pair in val:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("malformed dict item")
            out[decode(pair[0], make_handle, d)] = decode(pair[1], make_handle, d)
        return out
    if tag in ("$tu", "$s", "$fs") and type(val) is list:
        items = [decode(x, make_handle, d) for x in val]
        return tuple(items) if tag == "$tu" else set(items) if tag == "$s" else frozenset(items)
    if tag == "$c" and type(val) is list and len(val) == 2:
        return complex(decode(val[0], make_handle, d), decode(val[1], make_handle, d))
    if tag == "$fl" and val in ("nan", "inf", "-inf"):
        return float(val)
    if tag == "$h" and type(val) in (int, str):
        return make_handle(val) if make_handle else Handle(val)
    if tag == "$ty" and val in _TYPES_BY_NAME:
        return _TYPES_BY_NAME[val]
    raise ValueError(f"unknown tag {tag!r}")


_TYPES_BY_NAME = {t.__name__: t for t in (int, float, str, bool, bytes, list, tuple, dict, set, frozenset,
                                            complex, type(None), bytearray, object)}
_TYPES_BY_VALUE = {t: name for name, t in _TYPES_BY_NAME.items()}


def dumps(obj: "Any") -> bytes:
    """One message: the literal and a newline (``repr`` escapes newlines inside strings)."""
    return repr(obj).encode("utf-8", "backslashreplace") + b"\n"


def loads(line: bytes) -> "Any":
    """Parse a message from an untrusted sender: literals only, bounded size."""
    import ast

    if len(line) > MAX_MESSAGE_BYTES:
        raise ValueError("message too large")
    try:
        return ast.literal_eval(line.decode("utf-8"))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed message: {type(exc).__name__}") from None


def dumps_request(obj: "Any") -> bytes:
    """A judge -> candidate message: marshal (built in, no parsing cost in the fresh interpreter),
    length-prefixed. Only ever read by the candidate side: marshal is not safe for untrusted input,
    so the trusted side never loads it."""
    import marshal

    data = marshal.dumps(obj)
    return len(data).to_bytes(4, "big") + data


def read_request(stream: "Any") -> "Any":
    """Read one ``dumps_request`` message from a binary stream; None at end of stream."""
    import marshal

    head = stream.read(4)
    if len(head) < 4:
        return None
    data = stream.read(int.from_bytes(head, "big"))
    return marshal.loads(data)


def to_json(obj: "Any") -> "Any":
    """An encoded value with bytes as ``{"$b": base64}``, for the JSON channel to the host."""
    import base64

    if type(obj) is bytes:
        return {"$b": base64.b64encode(obj).decode("ascii")}
    if type(obj) is list:
        return [to_json(x) for x in obj]
    if type(obj) is dict:
        return {k: to_json(v) for k, v in obj.items()}
    return obj


def from_json(obj: "Any") -> "Any":
    """Inverse of ``to_json``."""
    import base64

    if type(obj) is list:
        return [from_json(x) for x in obj]
    if type(obj) is dict:
        if len(obj) == 1 and "$b" in obj and type(obj["$b"]) is str:
            return base64.b64decode(obj["$b"].encode("ascii"), validate=True)
        return {k: from_json(v) for k, v in obj.items()}
    return obj
