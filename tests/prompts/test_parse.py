"""Reading prompt files: JSONL, CSV and JSON arrays, and every way a file can be wrong."""

import json

import pytest

from app.errors import Invalid
from app.prompts.models import PromptKind
from app.prompts.service import detect_format, parse_prompt_file


def jsonl(*objects: object) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode()


def bad_lines(data: bytes, fmt: str) -> list[dict]:
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(data, fmt)
    assert caught.value.code == "invalid_prompt_file", caught.value.message
    return caught.value.details


# JSONL.

def test_jsonl_text_and_chat_prompts_with_id_user_and_meta():
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a prime."}]
    items = parse_prompt_file(jsonl(
        {"prompt": "  Write a haiku about rain.  ", "id": "p1", "user": "alice", "meta": {"topic": "poetry"}},
        {"messages": chat, "id": 7},
        {"prompt": "Plain prompt"},
    ), "jsonl")

    assert [(i.line, i.kind) for i in items] == [(1, PromptKind.text), (2, PromptKind.chat), (3, PromptKind.text)]
    first, second, third = items
    assert first.text == "Write a haiku about rain."  # surrounding blanks are trimmed
    assert first.messages is None
    assert (first.external_id, first.source_user, first.meta) == ("p1", "alice", {"topic": "poetry"})
    assert second.messages == chat
    assert second.text == "system: Be brief.\n\nuser: Name a prime."
    assert (second.external_id, second.source_user, second.meta) == ("7", None, {})  # integer ids become text
    assert (third.external_id, third.source_user, third.meta) == (None, None, {})
    assert len({first.content_hash, second.content_hash, third.content_hash}) == 3


def test_jsonl_blank_lines_are_skipped_and_line_numbers_count_them():
    data = b'\n{"prompt": "one"}\n   \n\r\n{"prompt": "two"}\n\n'
    items = parse_prompt_file(data, "jsonl")
    assert [(i.line, i.text) for i in items] == [(2, "one"), (5, "two")]


def test_jsonl_with_utf8_bom_and_crlf_line_ends():
    data = "\ufeff".encode() + '{"prompt": "café"}\r\n{"prompt": "naïve"}\r\n'.encode()
    assert [i.text for i in parse_prompt_file(data, "jsonl")] == ["café", "naïve"]


def test_jsonl_line_separator_inside_a_string_does_not_split_the_line():
    # json.dumps(..., ensure_ascii=False) writes U+2028 unescaped; it is not a line end in JSONL.
    data = jsonl({"prompt": "first\u2028second"}, {"prompt": "next\u0085one"})
    items = parse_prompt_file(data, "jsonl")
    assert [(i.line, i.text) for i in items] == [(1, "first\u2028second"), (2, "next\u0085one")]


def test_same_text_prompt_gives_the_same_hash_and_chat_differs_from_text():
    a, b, c = parse_prompt_file(jsonl(
        {"prompt": "user: hi"}, {"prompt": " user: hi "}, {"messages": [{"role": "user", "content": "hi"}]},
    ), "jsonl")
    assert a.content_hash == b.content_hash
    assert c.text == a.text and c.content_hash != a.content_hash


# A bad file: every bad line, nothing returned.

def test_every_bad_line_is_reported_with_its_number_and_reason():
    lines = [
        '{"prompt": "fine"}',                                                          # 1
        '{"prompt": "broken',                                                          # 2 invalid JSON
        '{"prompt": "also fine"}',                                                     # 3
        '{"prompt": "x", "extra": 1}',                                                 # 4 unknown field
        '{"prompt": "   "}',                                                           # 5 empty prompt
        '',                                                                            # 6 blank, skipped
        '{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}',             # 7 both
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',  # 8 last not user
        '{"prompt": "nul\\u0000here"}',                                                # 9 NUL
        '{"prompt": "t", "id": 1.5}',                                                  # 10 wrong id type
        '["not", "an", "object"]',                                                     # 11 not an object
        '{"messages": [{"role": "robot", "content": "hi"}]}',                          # 12 bad role
        '{"prompt": "m", "meta": "not an object"}',                                    # 13 meta type
        '{"prompt": "m", "meta": []}',                                                 # 14 meta type
        '{"prompt": 42}',                                                              # 15 prompt type
        '{"prompt": "u", "user": true}',                                               # 16 user type
        '{"messages": []}',                                                            # 17 empty messages
    ]
    details = bad_lines("\n".join(lines).encode(), "jsonl")

    assert [d["line"] for d in details] == [2, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    reasons = {d["line"]: d["message"] for d in details}
    assert reasons[2].startswith("not valid JSON")
    assert "unknown field 'extra'" in reasons[4]
    assert reasons[5] == "prompt is empty"
    assert "exactly one of 'prompt'" in reasons[7]
    assert "last message must have role 'user'" in reasons[8]
    assert "NUL character" in reasons[9]
    assert reasons[10] == "id must be a string or an integer"
    assert reasons[11] == "expected a JSON object, got list"
    assert "role 'robot'" in reasons[12]
    assert reasons[13] == reasons[14] == "meta must be an object"
    assert reasons[15] == "prompt must be a string, not int"
    assert reasons[16] == "user must be a string or an integer"
    assert "non-empty list" in reasons[17]


def test_values_a_database_cannot_store_are_bad_lines():
    lines = [
        r'{"prompt": "meta NUL", "meta": {"note": "a\u0000b"}}',
        r'{"prompt": "meta NUL key", "meta": {"k\u0000": 1}}',
        '{"prompt": "meta NaN", "meta": {"scores": [1, NaN]}}',
        '{"prompt": "meta infinity", "meta": {"big": 1e400}}',
        r'{"prompt": "meta surrogate", "meta": {"s": "\ud800"}}',
        r'{"prompt": "lone \udc00 surrogate"}',
        r'{"messages": [{"role": "user", "content": "\ud83d"}]}',
        "[" * 100_000 + "]" * 100_000,
        '{"prompt": "huge id", "id": ' + "1" * 5_000 + '}',
        r'{"prompt": "a real pair \ud83d\ude00", "meta": {"emoji": "\ud83d\ude00", "x": 1.5, "n": null}}',
    ]
    details = bad_lines("\n".join(lines).encode(), "jsonl")
    assert [(d["line"], d["message"]) for d in details] == [
        (1, "meta holds a NUL character"),
        (2, "meta holds a NUL character"),
        (3, "meta holds NaN or Infinity"),
        (4, "meta holds NaN or Infinity"),
        (5, "meta holds a lone surrogate (a \\ud800-\\udfff escape without its pair)"),
        (6, "prompt contains a lone surrogate (a \\ud800-\\udfff escape without its pair)"),
        (7, "message 1 content contains a lone surrogate (a \\ud800-\\udfff escape without its pair)"),
        (8, "not valid JSON: nested too deeply at column 1"),
        (9, "not valid JSON: a number has too many digits at column 1"),
    ]
    (item,) = parse_prompt_file(lines[-1].encode(), "jsonl")
    assert (item.text, item.meta) == ("a real pair \U0001f600", {"emoji": "\U0001f600", "x": 1.5, "n": None})


def test_deeply_nested_json_array_is_refused():
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(b"[" * 100_000 + b"]" * 100_000, "json")
    assert (caught.value.code, caught.value.message) == ("invalid_json",
                                                         "not valid JSON: nested too deeply at line 1 column 1")


def test_the_error_message_counts_the_bad_lines_and_names_the_first():
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(b'{"prompt": "ok"}\n{"prompt": ""}\n{"oops": 1}\n', "jsonl")
    assert caught.value.status_code == 422
    assert caught.value.message.startswith("2 bad lines, nothing imported: line 2: prompt is empty; line 3: ")


def test_a_file_of_blank_lines_holds_no_prompts():
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(b"\n  \n\n", "jsonl")
    assert caught.value.code == "empty_prompt_file"


def test_unknown_format_is_refused():
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(b'{"prompt": "x"}', "xml")
    assert caught.value.code == "unknown_format"
    assert "'xml'" in caught.value.message


# Not UTF-8.

def test_non_utf8_bytes_name_the_offset_and_line():
    data = b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n'
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(data, "jsonl")
    assert caught.value.code == "not_utf8"
    assert caught.value.status_code == 422
    assert data.index(b"\xe9") == 34
    assert "byte 0xe9 at offset 34 (line 2)" in caught.value.message


def test_non_utf8_offset_counts_the_bom():
    data = b"\xef\xbb\xbf" + b'{"prompt": "a"}\n{"prompt": "b\xff"}\n'
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(data, "jsonl")
    offset = data.index(b"\xff")
    assert f"byte 0xff at offset {offset} (line 2)" in caught.value.message


def test_non_utf8_csv_is_refused_the_same_way():
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(b"prompt\nok\n\x81bad\n", "csv")
    assert caught.value.code == "not_utf8"
    assert "byte 0x81 at offset 10 (line 3)" in caught.value.message


# Duplicate ids inside one file.

def test_duplicate_id_with_different_content_names_both_lines():
    details = bad_lines(jsonl({"prompt": "first", "id": "a"}, {"prompt": "other"},
                              {"prompt": "second", "id": "a"}), "jsonl")
    assert details == [{"line": 3, "message": "id 'a' is already used on line 1 for a different prompt"}]


def test_duplicate_id_with_the_same_content_is_not_an_error():
    items = parse_prompt_file(jsonl({"prompt": "same", "id": "a"}, {"prompt": " same", "id": "a"}), "jsonl")
    assert [i.line for i in items] == [1, 2]
    assert items[0].content_hash == items[1].content_hash


# CSV.

def test_csv_prompt_id_user_and_extra_columns_as_meta():
    data = ("id,prompt,user,topic,lang\n"
            "p1,Write a limerick,alice,poetry,en\n"
            'p2,"Say ""hi"", twice",bob,,de\n').encode()
    items = parse_prompt_file(data, "csv")
    assert [(i.line, i.external_id, i.text, i.source_user, i.meta) for i in items] == [
        (2, "p1", "Write a limerick", "alice", {"topic": "poetry", "lang": "en"}),
        (3, "p2", 'Say "hi", twice', "bob", {"lang": "de"}),  # an empty cell is left out of meta
    ]
    assert all(i.kind == PromptKind.text for i in items)


def test_csv_with_bom_and_blank_rows():
    data = "\ufeffprompt\nfirst\n\n,\nsecond\n".encode()
    assert [(i.line, i.text) for i in parse_prompt_file(data, "csv")] == [(2, "first"), (5, "second")]


def test_csv_multi_line_cells_give_the_starting_line_of_each_bad_row():
    data = ("id,prompt,user\n"
            '1,"a prompt\nover three\nlines",alice\n'      # lines 2-4
            "2,,bob\n"                                     # line 5: no prompt
            '3,"two\nlines",carl\n'                        # lines 6-7
            "4,too,many,cells\n").encode()                 # line 8
    details = bad_lines(data, "csv")
    assert [d["line"] for d in details] == [5, 8]
    assert "exactly one of 'prompt'" in details[0]["message"]
    assert details[1]["message"] == "has 4 columns; the header has 3"


def test_csv_multi_line_cell_keeps_its_newlines():
    items = parse_prompt_file(b'prompt\n"line one\nline two"\nnext\n', "csv")
    assert [(i.line, i.text) for i in items] == [(2, "line one\nline two"), (4, "next")]


def test_csv_messages_column_of_json():
    turns = [{"role": "user", "content": "Hello, there"}]
    data = ("id,messages\n"
            f'c1,"{json.dumps(turns).replace(chr(34), chr(34) * 2)}"\n'
            "c2,{not json}\n").encode()
    details = bad_lines(data, "csv")
    assert details == [{"line": 3, "message": "messages is not valid JSON: Expecting property name enclosed in "
                                              "double quotes"}]

    items = parse_prompt_file(data.rsplit(b"c2", 1)[0], "csv")
    assert len(items) == 1
    assert (items[0].kind, items[0].messages, items[0].external_id) == (PromptKind.chat, turns, "c1")


def test_csv_without_a_prompt_column_is_refused():
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(b"text,id\nhello,1\n", "csv")
    assert caught.value.code == "invalid_csv"
    assert "'prompt' column" in caught.value.message


def test_csv_header_naming_a_column_twice_is_refused():
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(b"prompt,prompt\na,b\n", "csv")
    assert caught.value.code == "invalid_csv"


# JSON arrays.

def test_json_array_body():
    data = json.dumps([{"prompt": "one", "id": "a"},
                       {"messages": [{"role": "user", "content": "two"}], "user": "u9"}]).encode()
    items = parse_prompt_file(data, "json")
    assert [(i.line, i.kind, i.text, i.external_id, i.source_user) for i in items] == [
        (1, PromptKind.text, "one", "a", None), (2, PromptKind.chat, "user: two", None, "u9"),
    ]


def test_json_array_errors_use_the_position_in_the_array():
    details = bad_lines(json.dumps([{"prompt": "ok"}, {"prompt": ""}, "text", {"prompt": "ok2"}]).encode(), "json")
    assert [(d["line"], d["message"]) for d in details] == [(2, "prompt is empty"),
                                                            (3, "expected a JSON object, got str")]


@pytest.mark.parametrize(("body", "needle"), [
    (b'{"prompt": "an object, not an array"}', "must be an array"),
    (b'[{"prompt": "x"}', "not valid JSON"),
])
def test_json_that_is_not_an_array_is_refused(body, needle):
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(body, "json")
    assert caught.value.code == "invalid_json"
    assert needle in caught.value.message


def test_empty_json_array_holds_no_prompts():
    with pytest.raises(Invalid) as caught:
        parse_prompt_file(b"[]", "json")
    assert caught.value.code == "empty_prompt_file"


# Detecting the format.

@pytest.mark.parametrize(("filename", "content_type", "data", "expected"), [
    ("prompts.csv", None, b"prompt\nx", "csv"),
    ("PROMPTS.CSV", "application/json", b"[", "csv"),           # the name wins over the content type
    ("prompts.jsonl", "text/csv", b"[", "jsonl"),
    ("prompts.ndjson", None, b"{}", "jsonl"),
    ("prompts.json", None, b'[{"prompt": "x"}]', "json"),
    ("prompts.json", None, b'{"prompt": "x"}\n', "jsonl"),      # JSON lines in a .json file
    ("prompts.json", None, b'\xef\xbb\xbf \n [{"prompt": "x"}]', "json"),  # BOM and blanks before the [
    (None, "text/csv; charset=utf-8", b"prompt\nx", "csv"),
    (None, "application/json", b'[{"prompt": "x"}]', "json"),
    (None, "Application/JSON; charset=utf-8", b'{"prompt": "x"}', "jsonl"),
    (None, "application/x-ndjson", b'[{"prompt": "x"}]', "jsonl"),
    (None, None, b'{"prompt": "x"}', "jsonl"),
    ("notes.txt", "text/plain", b'{"prompt": "x"}', "jsonl"),
])
def test_detect_format(filename, content_type, data, expected):
    assert detect_format(filename, content_type, data) == expected
