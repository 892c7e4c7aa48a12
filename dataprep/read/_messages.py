"""Chat adapters: OpenAI-style and ShareGPT-style conversations -> canonical messages.

::

    [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]        (ShareGPT)
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}] (OpenAI)
        -> [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]

Each message is read by its own keys: ``role``/``content`` (OpenAI) when it has
either, else ``from``/``value`` (ShareGPT), else OpenAI again when it has ``tool_calls``. The canonical message,
stored as JSON, keeps what chat templates need, in this key order; optional keys
are present only when the source has them::

    {"role": str,                     after the role mapping below
     "content": str | None,           None only for an assistant message with tool_calls
     "tool_calls": [{"type": "function", "function": {"name": str, "arguments": object | str},
                     "id": str (when given)}],
     "reasoning_content": str,        from reasoning_content, reasoning or thinking
     "name": str, "tool_call_id": str,
     "train": bool}                   from train (bool), loss_weight or weight (0 or 1)

* ``tool_calls`` items may leave out the ``function`` wrapper (``{name, arguments}``);
  ``arguments`` is kept as given, an object or a JSON string (the chat layer decides
  the form its template needs). An empty or null ``tool_calls`` is no calls.
* ``content`` may be a list of typed parts: the ``text`` parts are joined with ``""``;
  any other part (image, audio, ...) makes the record ``non_text_content``.
* Roles are mapped (``roles:`` of an input): ShareGPT-shaped messages start from
  LLaMA-Factory's conventions (:data:`SHAREGPT_ROLES`), which a recipe's mapping
  overrides and extends; OpenAI-shaped messages take the recipe's mapping alone. The
  target ``tool_call`` turns a message whose content is a JSON call ``{name, arguments}``
  (a string, an object, or a list of calls) into an assistant message with
  ``content: null`` and those ``tool_calls``. Roles not in the mapping are kept as
  written, so the template layer decides what it can render.

The shape is checked here, the meaning (role order, known roles, an assistant turn to
learn) is not. A problem is ``(reason, message)``: ``bad_messages`` with the message's
index, or ``non_text_content``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ._common import json_type, names_list

# LLaMA-Factory's ShareGPT role names -> template roles (a recipe's `roles:` overrides and extends)
SHAREGPT_ROLES = {
    "human": "user",
    "gpt": "assistant",
    "observation": "tool",
    "function_call": "tool_call",
    "system": "system",
}
ROLE_TARGETS = ("user", "assistant", "system", "tool", "tool_call")
BAD, NON_TEXT = "bad_messages", "non_text_content"
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_TRAIN_KEYS = ("train", "loss_weight", "weight")
_PASSED = ("name", "tool_call_id")

Problem = tuple[str, str]


def normalize_messages(
    value: object, name: str = "messages", roles: Mapping[str, str] | None = None
) -> list[dict] | Problem:
    """One conversation as canonical messages (see the module docstring), or why it is not one.

    Args:
        value: The parsed field: a list of message objects.
        name: What the field is called in messages (its path in the record).
        roles: The input's role mapping (``roles:``), dataset role -> template role.

    Returns:
        The normalised messages, or ``(reason, message)`` saying what is wrong and where,
        e.g. ``("bad_messages", "messages[2]: missing 'content'")``.

    Example:
        >>> normalize_messages([{"from": "human", "value": "Hi"}], "conversations")
        [{'role': 'user', 'content': 'Hi'}]
        >>> normalize_messages([{"role": "user"}])
        ('bad_messages', "messages[0]: missing 'content'")
    """
    if type(value) is not list:
        return BAD, f"{name}: expected a list of messages, got {json_type(value)}"
    openai = dict(roles or {})
    sharegpt = {**SHAREGPT_ROLES, **openai}
    out: list[dict] = []
    for index, message in enumerate(value):
        result = _message(message, f"{name}[{index}]", openai, sharegpt)
        if type(result) is tuple:
            return result
        out.append(result)
    return out


def _message(message: object, where: str, openai: dict, sharegpt: dict) -> dict | Problem:
    if type(message) is not dict:
        return BAD, f"{where}: expected an object with role and content, got {json_type(message)}"
    if "role" in message or "content" in message:
        role_key, content_key, mapping = "role", "content", openai
    elif "from" in message or "value" in message:
        role_key, content_key, mapping = "from", "value", sharegpt
    elif "tool_calls" in message:
        role_key, content_key, mapping = "role", "content", openai
    else:
        return BAD, f"{where}: missing 'role' (keys present: {names_list(list(message))})"
    if role_key not in message:
        return BAD, f"{where}: missing {role_key!r}"
    written = message[role_key]
    if type(written) is not str:
        return BAD, f"{where}: {role_key!r} is {json_type(written)}, expected a string"
    role = mapping.get(written, written)
    calls = message.get("tool_calls")
    if calls is not None:
        calls = _tool_calls(calls, f"{where}.tool_calls")
        if type(calls) is tuple:
            return calls
    content = message.get(content_key)
    if role == "tool_call":
        if calls:
            return BAD, f"{where}: role {written!r} is mapped to tool_call, so its {content_key!r} is the call; it has tool_calls too"
        calls = _call_content(content, f"{where}.{content_key}", written)
        if type(calls) is tuple:
            return calls
        role, content = "assistant", None
    elif content is None and calls and role == "assistant":
        pass  # an assistant turn that only calls tools
    elif content_key not in message:
        return BAD, f"{where}: missing {content_key!r}"
    elif type(content) is list:
        content = _parts(content, f"{where}.{content_key}")
        if type(content) is tuple:
            return content
    elif type(content) is not str:
        return BAD, f"{where}: {content_key!r} is {json_type(content)}, expected a string"
    if calls and role != "assistant":
        return BAD, f"{where}: a {role!r} message has tool_calls; only assistant messages call tools"
    out: dict = {"role": role, "content": content}
    if calls:
        out["tool_calls"] = calls
    for key in _REASONING_KEYS:
        if message.get(key) is not None:
            if type(message[key]) is not str:
                return BAD, f"{where}: {key!r} is {json_type(message[key])}, expected a string"
            out["reasoning_content"] = message[key]
            break
    for key in _PASSED:
        if message.get(key) is not None:
            if type(message[key]) is not str:
                return BAD, f"{where}: {key!r} is {json_type(message[key])}, expected a string"
            out[key] = message[key]
    train = _train_flag(message, where)
    if type(train) is tuple:
        return train
    if train is not None:
        out["train"] = train
    return out


def _tool_calls(calls: object, where: str) -> list[dict] | Problem:
    """``tool_calls`` in OpenAI shape, or ``{name, arguments}`` items (wrapped)."""
    if type(calls) is not list:
        return BAD, f"{where}: expected a list of calls, got {json_type(calls)}"
    out = []
    for index, item in enumerate(calls):
        at = f"{where}[{index}]"
        if type(item) is not dict:
            return BAD, f"{at}: expected an object with a function name and arguments, got {json_type(item)}"
        if item.get("type", "function") != "function":
            return BAD, f"{at}: type {item['type']!r}; only function calls are supported"
        function = item["function"] if "function" in item else item
        if type(function) is not dict:
            return BAD, f"{at}.function: expected an object with name and arguments, got {json_type(function)}"
        call = _call(function, at if function is item else f"{at}.function")
        if type(call) is tuple:
            return call
        if item.get("id") is not None:
            if type(item["id"]) is not str:
                return BAD, f"{at}: 'id' is {json_type(item['id'])}, expected a string"
            call["id"] = item["id"]
        out.append(call)
    return out


def _call(function: dict, where: str) -> dict | Problem:
    name = function.get("name")
    if type(name) is not str or not name:
        got = "missing" if "name" not in function else "empty" if name == "" else json_type(name)
        return BAD, f"{where}: the function name is {got}, expected a non-empty string"
    if "arguments" not in function:
        return BAD, f"{where}: missing 'arguments' (an object, or a JSON string)"
    arguments = function["arguments"]
    if type(arguments) not in (dict, str):
        return BAD, f"{where}: 'arguments' is {json_type(arguments)}, expected an object or a JSON string"
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def _call_content(content: object, where: str, written: str) -> list[dict] | Problem:
    """The content of a ``tool_call`` message: a JSON call ``{name, arguments}`` (or a list of them)."""
    what = f"role {written!r} is mapped to tool_call, so {where} must be a JSON call {{name, arguments}}"
    value = content
    if type(content) is str:
        try:
            value = json.loads(content)
        except ValueError:
            return BAD, f"{what}; it is not JSON: {content[:60]!r}"
    items = value if type(value) is list and value else [value]
    out = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            return BAD, f"{what}; it holds {json_type(item)}"
        call = _call(item, where if len(items) == 1 else f"{where}[{index}]")
        if type(call) is tuple:
            return BAD, f"{what}; {call[1]}"
        out.append(call)
    return out


def _parts(parts: list, where: str) -> str | Problem:
    """Typed content parts -> their text joined; a part of another type is a problem."""
    texts = []
    for index, part in enumerate(parts):
        at = f"{where}[{index}]"
        if type(part) is not dict or type(part.get("type")) is not str:
            return BAD, f"{at}: expected a typed part such as {{\"type\": \"text\", \"text\": ...}}, got {json_type(part)}"
        if part["type"] != "text":
            return NON_TEXT, f"{at}: a part of type {part['type']!r}; only text content is read"
        if type(part.get("text")) is not str:
            return BAD, f"{at}: 'text' is {json_type(part.get('text'))}, expected a string"
        texts.append(part["text"])
    return "".join(texts)


def _train_flag(message: dict, where: str) -> bool | None | Problem:
    """``train`` (bool), or ``loss_weight`` / ``weight`` of 0 or 1; None when none is given."""
    found: dict[str, bool] = {}
    for key in _TRAIN_KEYS:
        value = message.get(key)
        if value is None:
            continue
        if key == "train":
            if type(value) is not bool:
                return BAD, f"{where}: 'train' is {json_type(value)}, expected true or false"
            found[key] = value
        elif type(value) not in (int, float):
            return BAD, f"{where}: {key!r} is {json_type(value)}, expected 0 or 1"
        elif value not in (0, 1):
            return BAD, f"{where}: {key!r} is {value!r}; only 0 (not trained) and 1 (trained) are supported"
        else:
            found[key] = value == 1
    if len(set(found.values())) > 1:
        return BAD, f"{where}: {' and '.join(map(repr, found))} disagree on whether the message is trained"
    return next(iter(found.values()), None)
