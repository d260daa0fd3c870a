"""Random JSON event lines for the decoder equivalence tests."""

from __future__ import annotations

import json
import random

#: Malformed JSON lines and (a part of) the reason each is rejected with.
MALFORMED_JSON = [
    (b'{"user_id": "u1", "item_id": ', "invalid JSON"),
    (b"\xff\xfe{}", "invalid JSON"),
    (b'["u1", "i1", 1]', "event must be a JSON object, got list"),
    (b'{"item_id": "i1", "ts": 1}', "user_id must be a string"),
    (b'{"user_id": "u1", "ts": 1}', "item_id must be a string"),
    (b'{"user_id": "", "item_id": "i1", "ts": 1}', "user_id is empty"),
    (b'{"user_id": "   ", "item_id": "i1", "ts": 1}', "user_id is empty"),
    (b'{"user_id": "u1", "item_id": ["i1"], "ts": 1}', "item_id must be a string, got list"),
    (b'{"user_id": {"id": 1}, "item_id": "i1", "ts": 1}', "user_id must be a string, got dict"),
    (b'{"user_id": true, "item_id": "i1", "ts": 1}', "user_id must be a string, got bool"),
    (b'{"user_id": 1.5, "item_id": "i1", "ts": 1}', "user_id must be a string, got float"),
    (b'{"user_id": "u1", "item_id": "i1"}', "ts is missing"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": "yesterday"}', "is not a number or ISO-8601"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": -5}', "not a finite, non-negative"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": NaN}', "not a finite, non-negative"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": "nan"}', "not a finite, non-negative"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": Infinity}', "not a finite, non-negative"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": true}', "ts must be a number"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": [1]}', "ts must be a number"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": 1, "event": ""}', "event must be a non-empty"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": 1, "event": 3}', "event must be a non-empty"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": 1, "category": 3}', "category must be a string"),
    (b'{"user_id": "u1", "item_id": "i1", "ts": 1, "metadata": "x"}', "metadata must be a JSON"),
]


def random_line(rng: random.Random, n: int) -> bytes:
    """A JSON line that is valid, subtly invalid, or not a single JSON value at all."""
    values = {
        "user_id": [f"u{n}", f" u{n} ", n, "", "  ", True, 1.5, None, "x" * 257,
                    " " + "y" * 256, ["u"], 2**70],
        "item_id": [f"i{n % 50}", n % 50, "", {"id": 1}],
        "event": ["view", "click", " buy ", "", "  ", 3, "e" * 65, None],
        "ts": [1700000000 + n, 1700000000.5, 1700000000123, "1700000000", "2024-01-01T00:00:00Z",
               "soon", -1, True, None, [1], 1e400, 2**80],
        "category": ["books", "", None, 7, "c" * 257],
        "metadata": [{"title": "Dune", "n": 2**70}, {}, None, "x", [1]],
    }
    doc = {}
    for key, choices in values.items():
        if rng.random() < 0.9:
            # Mostly valid values, so whole batches take the fast path most of the time.
            doc[key] = choices[0] if rng.random() < 0.7 else rng.choice(choices)
    line = json.dumps(doc).encode()
    shape = rng.random()
    if shape < 0.04:
        return line[: rng.randint(0, len(line))]  # truncated
    if shape < 0.06:
        return line + b" " + line  # two values on one line
    if shape < 0.08:
        return b"[" + line + b"]"
    if shape < 0.09:
        return line.replace(b"1700000000", b"NaN", 1)
    if shape < 0.10:
        return line.replace(b'"', b'"\xff', 1)  # not UTF-8
    if shape < 0.11:
        return line[:-1] + b', "user_id": "dup"}' if line.endswith(b"}") else line
    return line


def _number(rng: random.Random) -> str:
    """A time as producers write it, sometimes at the edges of the scanner's fast path."""
    return rng.choice([
        f"{1700000000 + rng.randint(0, 10**6)}",
        f"{1700000000 + rng.random() * 1e6:.2f}",
        f"{1700000000 + rng.random() * 1e6!r}",
        f"{1700000000123 + rng.randint(0, 10**6)}",  # milliseconds
        f"{rng.random()!r}", "0", "0.0", "00", "1.", "-0", "-5", "1e9", "1.7E9", "1700000000.5e0",
        "123456789012345678.5", "9007199254740993", "9007199254740992", "0.1000000000000000055511",
        "1700000000.0000000000000000000000001", "Infinity", "NaN", '"1700000000"', "true", "null",
    ])


def _text(rng: random.Random, base: str) -> str:
    return rng.choice([base] * 6 + [f" {base}", f"{base} ", "", " ", base + "é", base + "\u2028",
                                    base + '"q', base + "\\", base + "\t", "x" * 256, "x" * 257])


def scanner_line(rng: random.Random, n: int) -> bytes:
    """A JSON line in the many shapes producers write (key order, spacing, integer ids, escapes,
    repeated or changing item descriptions, unknown and repeated keys), valid or not."""
    item = rng.randint(0, 60)
    fields: list[tuple[str, str]] = []
    dump = json.dumps if rng.random() < 0.8 else (lambda v: json.dumps(v, ensure_ascii=False))
    user: object = rng.choice([f"u{rng.randint(0, 200)}"] * 5 + [rng.randint(0, 200), 2**70])
    if isinstance(user, str):
        user = _text(rng, user) if rng.random() < 0.2 else user
    fields.append(("user_id", dump(user)))
    fields.append(("item_id", dump(f"i{item}" if rng.random() < 0.9 else item)))
    fields.append(("ts", _number(rng) if rng.random() < 0.3 else f"{1700000000 + n}.25"))
    if rng.random() < 0.8:
        kind = rng.choice(["view", "view", "click", "buy", "cart"])
        fields.append(("event", dump(_text(rng, kind) if rng.random() < 0.1 else kind)))
    if rng.random() < 0.7:
        cat = rng.choice([f"c{item % 5}"] * 8 + [f"c{item % 3}", "", None, 7])
        fields.append(("category", dump(cat)))
    if rng.random() < 0.7:
        meta = rng.choice([{"title": f"T{item}", "price": item * 1.5}] * 6 + [
            {"title": f"T{item}", "price": item * 2.5, "tags": ["a", "}", '"{']},
            {"title": f"T{item}"}, {}, None, [1], "x", {"nested": {"k": [1, {"z": None}]}}])
        fields.append(("metadata", dump(meta)))
    if rng.random() < 0.03:
        fields.append((rng.choice(["extra", "user_id", "ts", "Event"]), "1"))
    rng.shuffle(fields)
    space = rng.choice(["", "", " ", "\t", "  "])
    body = ("," + space).join(f'{space}"{k}"{space}:{space}{v}' for k, v in fields)
    line = ("{" + body + space + "}").encode("utf-8", "surrogatepass")
    shape = rng.random()
    if shape < 0.02:
        return line[: rng.randint(0, len(line))]
    if shape < 0.03:
        return line + b" {}"
    if shape < 0.04:
        return line.replace(b":", b"", 1)
    if shape < 0.05:
        return line.replace(b'"', b'"\xff', 1)
    if shape < 0.06:
        return line.replace(b"}", b"]", 1)
    if shape < 0.07:
        return b" \t" + line + b" \r"
    return line
