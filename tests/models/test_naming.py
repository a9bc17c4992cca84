"""Fine-tuned model names: ft:BASE:ORG:SUFFIX:ID, checkpoints with their own id and :ckpt-step-N."""

from __future__ import annotations

import re

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.models.naming import SUFFIX_MAX, checkpoint_name, clean_suffix, fine_tuned_name

ID8 = r"[A-Za-z0-9]{8}"


def test_name_has_openais_five_parts():
    name = fine_tuned_name("smollm2-135m-instruct", "local", "orders")
    assert re.fullmatch(rf"ft:smollm2-135m-instruct:local:orders:{ID8}", name)


def test_ids_are_fresh_each_time():
    names = {fine_tuned_name("m", "o", "s") for _ in range(20)}
    assert len(names) == 20


def test_given_id_is_used():
    assert fine_tuned_name("m", "org", "s", "AbCd1234") == "ft:m:org:s:AbCd1234"


@pytest.mark.parametrize("suffix", [None, ""])
def test_no_suffix_leaves_the_slot_empty(suffix):
    name = fine_tuned_name("smollm2-135m-instruct", "local", suffix)
    assert re.fullmatch(rf"ft:smollm2-135m-instruct:local::{ID8}", name)
    assert len(name.split(":")) == 5


def test_suffix_of_64_characters_is_accepted():
    suffix = "a" * SUFFIX_MAX
    assert SUFFIX_MAX == 64
    assert clean_suffix(suffix) == suffix
    assert fine_tuned_name("m", "o", suffix).split(":")[3] == suffix


@pytest.mark.parametrize(
    "suffix", ["a" * 65, "my:suffix", "my suffix", "tab\there", "new\nline", "a/b"]
)
def test_bad_suffixes_are_refused_with_param_suffix(suffix):
    with pytest.raises(TunesmithError) as caught:
        fine_tuned_name("m", "o", suffix)
    assert caught.value.param == "suffix"
    assert caught.value.status == 400


def test_suffix_may_hold_dots_dashes_and_underscores():
    assert fine_tuned_name("m", "o", "v1.2_orders-x", "AbCd1234") == "ft:m:o:v1.2_orders-x:AbCd1234"


def test_checkpoint_names_carry_their_own_id_and_step():
    model = fine_tuned_name("smollm2-135m-instruct", "local", "orders", "AbCd1234")
    ckpt = checkpoint_name(model, 101)
    match = re.fullmatch(rf"ft:smollm2-135m-instruct:local:orders:({ID8}):ckpt-step-101", ckpt)
    assert match, ckpt
    assert match.group(1) != "AbCd1234"
    assert (
        checkpoint_name(model, 5, "ZyXw9876")
        == "ft:smollm2-135m-instruct:local:orders:ZyXw9876:ckpt-step-5"
    )


def test_checkpoint_of_a_model_without_suffix():
    ckpt = checkpoint_name("ft:m:o::AbCd1234", 3, "ZyXw9876")
    assert ckpt == "ft:m:o::ZyXw9876:ckpt-step-3"


@pytest.mark.parametrize(
    ("base", "slug"),
    [
        ("/home/me/models/my-llama", "my-llama"),
        ("/home/me/models/my-llama/", "my-llama"),
        ("relative/folder/tiny", "tiny"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct"),
        ("C:weird", "C-weird"),
    ],
)
def test_path_bases_are_reduced_to_the_folder_name(base, slug):
    name = fine_tuned_name(base, "local", "s", "AbCd1234")
    assert name == f"ft:{slug}:local:s:AbCd1234"
    assert len(name.split(":")) == 5
