"""身份证号 check digits and masking, 学号 cleaning."""

from __future__ import annotations

from lixiao.core.manual.identity import (
    clean_text,
    id_card_problem,
    id_check_digit,
    mask_id_card,
    mask_ids_in_text,
    normalize_id_card,
    student_no_problem,
)


def test_check_digit_of_known_numbers() -> None:
    """GB 11643 examples: the published sample 11010519491231002X and a digit-ending number."""
    assert id_check_digit("11010519491231002") == "X"
    assert id_card_problem("11010519491231002X") is None
    assert id_card_problem("110105194912310021") == "身份证号校验位错误（应为 X）"


def test_id_card_shape_errors() -> None:
    """Wrong length and letters in the body are refused with their own reasons."""
    assert id_card_problem("1101051949") == "身份证号应为 18 位，实际 10 位"
    assert id_card_problem("11010519491231A02X") == "身份证号只能是 17 位数字加一位数字或 X"


def test_mask_keeps_first_six_and_last_four() -> None:
    """Masking shows 6 + 4 characters and nothing in between."""
    assert mask_id_card("11010519491231002X") == "110105********002X"
    assert mask_id_card("") == ""


def test_full_width_and_invisible_characters_are_folded() -> None:
    """Full-width digits and zero-width spaces pasted from chat apps do not create a new 学号."""
    assert clean_text("０８０３\u200b０１０１０３ ") == "0803010103"
    assert normalize_id_card(" 11010519491231002x ") == "11010519491231002X"


def test_student_no_rules() -> None:
    """学号 may hold letters, digits, - and _; anything else is refused."""
    assert student_no_problem("0803010103") is None
    assert student_no_problem("") == "学号为空"
    assert student_no_problem("08 03") is not None


def test_ids_in_free_text_are_masked() -> None:
    """Every 身份证号-shaped run in a line is masked like mask_id_card; longer digit runs and 学号 are kept."""
    text = "第 5 行 备注“身份证430103200401010017”；另一个 11010519491231002x，学号 0803010103"
    assert mask_ids_in_text(text) == ("第 5 行 备注“身份证430103********0017”；另一个 110105********002x，"
                                      "学号 0803010103")
    assert mask_ids_in_text("订单号 14301032004010100170") == "订单号 14301032004010100170"
    assert mask_ids_in_text("430103200401010017.xlsx") == mask_id_card("430103200401010017") + ".xlsx"


def test_each_text_equals_changing_each_value() -> None:
    """One joined pass gives what changing each value gives; a value holding the separator, or a change that
    removes it, falls back to one value at a time."""
    import unicodedata

    from lixiao.core.manual.identity import each_text, mask_ids_in_text

    def fold(text: str) -> str:
        return unicodedata.normalize("NFKC", text)

    def drop_controls(text: str) -> str:
        return "".join(ch for ch in text if ch >= " ")

    cases = [["ＡＢ１", "ᄀ", "ᅡ", "e\u0301", ""], ["a\x01b", "Ｃ"], [], ["43010320040101003X", "1"]]
    for values in cases:
        for change in (fold, mask_ids_in_text, drop_controls):
            assert each_text(values, change) == [change(v) for v in values]
