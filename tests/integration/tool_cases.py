"""Twenty varied tools, each with a prompt that calls for it: for the tool-calling tests."""

from __future__ import annotations

from typing import Any


def tool(name: str, description: str, properties: dict[str, Any],
         required: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required is not None:
        parameters["required"] = required
    return {"type": "function",
            "function": {"name": name, "description": description, "parameters": parameters}}  # fmt: skip


STRING = {"type": "string"}
CASES: list[tuple[dict[str, Any], str]] = [
    (
        tool(
            "get_weather",
            "Get the current weather in a city.",
            {"city": STRING, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            ["city"],
        ),
        "What is the weather like in Paris today?",
    ),
    (
        tool(
            "add",
            "Add two numbers.",
            {"a": {"type": "number"}, "b": {"type": "number"}},
            ["a", "b"],
        ),
        "What is 17 plus 25?",
    ),
    (
        tool(
            "send_email",
            "Send an email.",
            {"to": STRING, "subject": STRING, "body": STRING},
            ["to", "subject"],
        ),
        "Email bob@example.com to say the meeting moved to 3pm.",
    ),
    (
        tool(
            "search_web",
            "Search the web.",
            {"query": STRING, "max_results": {"type": "integer", "minimum": 1, "maximum": 10}},
            ["query"],
        ),
        "Find recent news about the Mars rover.",
    ),
    (
        tool(
            "set_timer", "Set a timer.", {"minutes": {"type": "integer", "minimum": 1}}, ["minutes"]
        ),
        "Set a timer for ten minutes.",
    ),
    (
        tool(
            "translate",
            "Translate text.",
            {
                "text": STRING,
                "target_language": {"type": "string", "enum": ["fr", "de", "es", "it"]},
            },
            ["text", "target_language"],
        ),
        "Translate 'good morning' into German.",
    ),
    (
        tool(
            "create_event",
            "Create a calendar event.",
            {
                "title": STRING,
                "date": STRING,
                "attendees": {"type": "array", "items": STRING, "maxItems": 5},
            },
            ["title", "date"],
        ),
        "Schedule a team lunch on 2026-12-10 with Ann and Raj.",
    ),
    (
        tool("get_stock_price", "Get a stock's price.", {"ticker": STRING}, ["ticker"]),
        "What is the price of AAPL stock?",
    ),
    (
        tool(
            "convert_currency",
            "Convert an amount between currencies.",
            {"amount": {"type": "number"}, "from": STRING, "to": STRING},
            ["amount", "from", "to"],
        ),
        "Convert 100 US dollars to euros.",
    ),
    (
        tool("lookup_word", "Look up a word in the dictionary.", {"word": STRING}, ["word"]),
        "What does the word 'ephemeral' mean?",
    ),
    (
        tool(
            "turn_on_light",
            "Turn on a light.",
            {"room": STRING, "brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
            ["room"],
        ),
        "Turn on the kitchen light at half brightness.",
    ),
    (
        tool(
            "book_flight",
            "Book a flight.",
            {
                "origin": STRING,
                "destination": STRING,
                "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
            },
            ["origin", "destination"],
        ),
        "Book a flight from Boston to Denver for two people.",
    ),
    (
        tool(
            "get_time", "Get the current time in a time zone.", {"timezone": STRING}, ["timezone"]
        ),
        "What time is it in Tokyo?",
    ),
    (
        tool(
            "create_note",
            "Save a note.",
            {"text": STRING, "tags": {"type": "array", "items": STRING, "maxItems": 3}},
            ["text"],
        ),
        "Note down: buy milk and eggs.",
    ),
    (
        tool(
            "play_music",
            "Play a song.",
            {"song": STRING, "artist": STRING, "shuffle": {"type": "boolean"}},
            ["song"],
        ),
        "Play Yesterday by the Beatles.",
    ),
    (
        tool(
            "order_pizza",
            "Order a pizza.",
            {
                "size": {"type": "string", "enum": ["small", "medium", "large"]},
                "toppings": {"type": "array", "items": STRING, "maxItems": 4},
            },
            ["size"],
        ),
        "Order a large pizza with mushrooms.",
    ),
    (
        tool(
            "get_user", "Fetch a user record by id.", {"user_id": {"type": "integer"}}, ["user_id"]
        ),
        "Show me the record of user 4521.",
    ),
    (
        tool(
            "rate_movie",
            "Rate a movie.",
            {"title": STRING, "stars": {"type": "integer", "minimum": 1, "maximum": 5}},
            ["title", "stars"],
        ),
        "Give Inception five stars.",
    ),
    (tool("now", "The current date and time; takes no arguments.", {}), "What is the date today?"),
    (
        tool(
            "resize_image",
            "Resize an image.",
            {
                "path": STRING,
                "size": {
                    "type": "object",
                    "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
                    "required": ["width", "height"],
                },
            },
            ["path", "size"],
        ),
        "Resize photo.png to 800 by 600.",
    ),
]
