"""Chat adapters: OpenAI-style and ShareGPT-style conversations -> ``[{"role", "content"}]``.

::

    [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]        (ShareGPT)
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}] (OpenAI)
        -> [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]

Each message is read by its own keys: ``role``/``content`` (OpenAI) when it has
either, else ``from``/``value`` (ShareGPT). ShareGPT's ``human`` and ``gpt`` become
``user`` and ``assistant``; every other role (``system``, ``function_call``,
``observation``, ``tool``, ...) is kept as written, so the template layer decides
what it can render. Only role and content are kept. The shape is checked here,
the meaning (role order, known roles, an assistant turn to learn) is not.
"""

from __future__ import annotations

from ._common import json_type, names_list

SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}  # any other `from` value is kept as the role


def normalize_messages(value: object, name: str = "messages") -> list[dict[str, str]] | str:
    """One conversation as ``[{"role": ..., "content": ...}]``, or why it is not one.

    Args:
        value: The parsed field: a list of message objects.
        name: What the field is called in messages (its path in the record).

    Returns:
        The normalised messages, or a string saying what is wrong and where,
        e.g. ``"messages[2]: missing 'content'"``.

    Example:
        >>> normalize_messages([{"from": "human", "value": "Hi"}], "conversations")
        [{'role': 'user', 'content': 'Hi'}]
        >>> normalize_messages([{"role": "user"}])
        "messages[0]: missing 'content'"
    """
    if type(value) is not list:
        return f"{name}: expected a list of messages, got {json_type(value)}"
    out: list[dict[str, str]] = []
    for index, message in enumerate(value):
        where = f"{name}[{index}]"
        if type(message) is not dict:
            return f"{where}: expected an object with role and content, got {json_type(message)}"
        if "role" in message or "content" in message:
            role_key, content_key, rename = "role", "content", None
        elif "from" in message or "value" in message:
            role_key, content_key, rename = "from", "value", SHAREGPT_ROLES
        else:
            return f"{where}: missing 'role' (keys present: {names_list(list(message))})"
        for key in (role_key, content_key):
            if key not in message:
                return f"{where}: missing {key!r}"
            if type(message[key]) is not str:
                return f"{where}: {key!r} is {json_type(message[key])}, expected a string"
        role = message[role_key]
        out.append({"role": rename.get(role, role) if rename else role, "content": message[content_key]})
    return out
