"""Bad input, from fuzzed text to hostile URLs: every one gets a clear message, none a traceback.

SMILES and SELFIES text, ``--prefix``, uploads and query parameters are fuzzed (with
``hypothesis`` where it fits); user paths never leave their folders; the server settings that
keep the dashboard local hold; nothing executes or unpickles data read from disk.
"""

from __future__ import annotations

import ast
import os
import re
import time
import tomllib
from pathlib import Path

import mlx.core as mx
import pytest
import selfies as sf
from browser_util import app_test
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from tiny import SELFIES, tiny_bundle

from core import runs
from core.chem import (
    MAX_SMILES_CHARS,
    canonical_smiles,
    describe_smiles,
    mol_from_smiles,
    mol_to_png,
    selfies_to_mol,
    selfies_to_smiles,
    smiles_to_selfies,
)
from core.explore import MAX_UPLOAD_BYTES, MAX_UPLOAD_ROWS, ExploreError, parse_upload
from core.generate import GenerationError, encode_prefix, generate
from core.inspect import partial_properties
from core.tokenizer import Tokenizer, TokenizerError

ROOT = Path(__file__).resolve().parent.parent
FEW = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
SMILES_CHARS = "CNOSPFIBrcnos()[]=#@+-\\/%0123456789.*:$H "
SYMBOLS = sorted(sf.get_semantic_robust_alphabet()) + ["[Ring1]", "[Branch1]", "[=Branch2]"]
JUNK_SYMBOLS = ["[", "]", "[]", "[Xx]", "[C", "C]", "[=]", "[Ring9]", "[#Branch3]", ".", " "]

smiles_text = hs.text(alphabet=SMILES_CHARS, max_size=60) | hs.text(max_size=30)
selfies_text = hs.lists(hs.sampled_from(SYMBOLS + JUNK_SYMBOLS), max_size=25).map("".join) | (
    hs.text(max_size=30)
)


# ---------------------------------------------------------------- SMILES and SELFIES text


@FEW
@given(smiles_text)
def test_smiles_text_never_raises(text):
    mol = mol_from_smiles(text)
    assert (mol is None) == (canonical_smiles(text) is None)
    described = describe_smiles(text, ["logp", "tpsa", "qed", "sa"])
    assert (described is None) == (mol is None)
    assert smiles_to_selfies(text) is None or mol is not None
    assert mol_to_png(text, size=(60, 40))[:4] == b"\x89PNG"


def test_overlong_smiles_is_refused_fast():
    """RDKit's descriptors grow about quadratically with size: a pasted or uploaded string of
    100,000 atoms would hold a server thread for minutes."""
    start = time.perf_counter()
    assert mol_from_smiles("C" * 100_000) is None
    assert describe_smiles("C" * (MAX_SMILES_CHARS + 1)) is None
    assert mol_from_smiles("C" * MAX_SMILES_CHARS) is not None
    assert time.perf_counter() - start < 2


@FEW
@given(selfies_text)
def test_selfies_text_gives_none_or_a_tokenizer_error(text):
    smiles = selfies_to_smiles(text)
    assert isinstance(smiles, str) and (smiles == "") == (selfies_to_mol(text) is None)
    partial = partial_properties(text)
    assert partial is None or partial["n_atoms"] > 0
    tokenizer = Tokenizer.build(SELFIES)
    try:
        ids = tokenizer.encode(text, strict=False)
    except TokenizerError:
        return
    assert ids[-1] == tokenizer.eos_id and all(0 <= i < len(tokenizer) for i in ids)


# ---------------------------------------------------------------- --prefix


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@FEW
@given(selfies_text)
def test_prefix_is_accepted_or_refused_with_a_generation_error(bundle, text):
    try:
        ids = encode_prefix(bundle, text)
    except GenerationError as exc:
        assert "prefix" in str(exc) or "SELFIES" in str(exc)
        return
    assert len(ids) < bundle.args.max_len
    (molecule,) = generate(bundle, {"logp": 2.0}, 1, seed=0, prefix=text)
    assert molecule.startswith(text)


@pytest.mark.parametrize("prefix", ["[C]" * 16, "[C]" * 10_000, "[C][Xyz]", "[C", "C", "[PAD]"])
def test_unusable_prefixes(bundle, prefix):
    with pytest.raises(GenerationError):
        encode_prefix(bundle, prefix)


# ---------------------------------------------------------------- uploads


def csv_of(rows: list[str], header: str = "smiles") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty.csv", b"", "is empty"),
        ("blank.smi", b"\n \n\t\n", "only blank lines"),
        ("binary.csv", bytes(range(256)) * 40, "binary file"),
        ("photo.smi", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "binary file"),
        ("huge.csv", b"smiles\n" + b"C\n" * (MAX_UPLOAD_BYTES // 2), "the limit is 5 MB"),
        ("cols.csv", b"name,weight\nethanol,46\n", "no 'smiles' column (columns found: name"),
        ("header.csv", b"smiles\n", "no data rows"),
        ("latin.csv", "smiles,name\nCCO,café\n".encode("latin-1"), "not UTF-8"),
        ("quotes.csv", b'smiles,name\n"CCO,ethanol\n', "cannot be read as CSV: Error tokenizing"),
        ("table.xlsx", b"PK\x03\x04 not really", "expected a .csv, .smi or .txt"),
    ],
)
def test_unusable_upload_gives_one_clear_line(name, data, message):
    with pytest.raises(ExploreError, match=re.escape(message)) as info:
        parse_upload(name, data)
    assert "\n" not in str(info.value)


def test_utf16_upload_from_a_spreadsheet_is_read():
    """Excel's "Unicode Text" export: UTF-16 with a byte-order mark, tab separated."""
    data = "smiles\tname\r\nCCO\tethanol\r\nc1ccccc1\tbenzene\r\n".encode("utf-16")
    report = parse_upload("export.txt", data)
    assert report.table.smiles.tolist() == ["CCO", "c1ccccc1"]
    report = parse_upload("export.csv", data)
    assert report.table.smiles.tolist() == ["CCO", "c1ccccc1"]


def test_thousands_of_invalid_rows_are_reported_not_fatal():
    rows = [f"not-a-molecule-{i}" for i in range(MAX_UPLOAD_ROWS + 3000)] + ["CCO"]
    start = time.perf_counter()
    report = parse_upload("junk.csv", csv_of(rows))
    assert time.perf_counter() - start < 20
    assert len(report.table) == 0 and len(report.bad) == MAX_UPLOAD_ROWS
    assert set(report.bad.reason) == {"not a valid SMILES"}
    assert report.n_dropped == 3001 and "3,001 more ignored" in report.notes[0]


def test_overlong_molecules_in_an_upload_are_bad_rows():
    report = parse_upload("long.smi", b"CCO\n" + b"C" * 4_000_000 + b"\nCCN\n")
    assert report.table.smiles.tolist() == ["CCO", "CCN"]
    assert report.bad.reason.tolist() == [f"longer than {MAX_SMILES_CHARS} characters"]
    assert len(report.bad.input[0]) <= 200


def test_upload_name_is_only_a_label(tmp_path, monkeypatch):
    """A hostile file name is never opened or written: parsing works on the bytes alone."""
    monkeypatch.chdir(tmp_path)
    report = parse_upload("../../../etc/passwd.csv", csv_of(["CCO"]))
    assert len(report.table) == 1 and list(tmp_path.iterdir()) == []


@FEW
@given(
    name=hs.sampled_from(["a.csv", "a.smi", "a.txt", "a.CSV", "a.pdf", "a"]),
    data=hs.binary(max_size=300)
    | hs.text(alphabet=SMILES_CHARS + ",;\t\n\"'", max_size=300).map(str.encode),
)
def test_any_upload_gives_a_report_or_one_explore_error(name, data):
    try:
        report = parse_upload(name, data)
    except ExploreError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert len(report.table) + len(report.bad) == report.n_rows


# ---------------------------------------------------------------- the dashboard


@pytest.fixture
def dashboard(use_tiny_checkpoints, tmp_path, monkeypatch, fresh_app):
    monkeypatch.setenv("MOLSCOPE_RUNS", str(tmp_path / "runs"))
    return use_tiny_checkpoints


def test_bad_uploads_on_the_dataset_page_give_one_error(dashboard):
    at = app_test().run()
    at.switch_page("pages/dataset.py").run()
    cases = [
        ("huge.csv", b"smiles\n" + b"CCO\n" * (MAX_UPLOAD_BYTES // 3), "the limit is 5 MB"),
        ("noise.csv", os.urandom(3000), "binary"),
        ("junk.csv", csv_of([f"x{i}" for i in range(3000)]), None),
    ]
    for name, data, message in cases:
        at.file_uploader(key="upload").set_value((name, data, "text/csv")).run()
        assert not at.exception, name
        if message:
            assert len(at.error) == 1 and message in at.error[0].value, name
    assert any("3,000" in e.label for e in at.expander)  # the rows that could not be used


def test_step_is_off_as_soon_as_the_molecule_is_finished(tiny_checkpoints, tmp_path, monkeypatch):
    """A model that always writes [EOS]: the Step that finishes must leave Step and Play off
    (a second click would decode past the end)."""
    import mlx.core as mx

    from core.checkpoint import load_checkpoint, save_checkpoint

    bundle = load_checkpoint(tiny_checkpoints / "default")
    decoder, eos = bundle.model.decoder, bundle.tokenizer.eos_id
    decoder.norm.weight = mx.zeros_like(decoder.norm.weight)  # the head sees a constant vector
    decoder.norm.bias = mx.ones_like(decoder.norm.bias)
    decoder.head.weight = mx.zeros_like(decoder.head.weight).at[eos].add(1.0)
    save_checkpoint(tmp_path / "checkpoints" / "default", bundle)
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("MOLSCOPE_RUNS", str(tmp_path / "runs"))
    at = app_test().run()
    at.switch_page("pages/generate.py").run()
    at.button(key="gen_step").click().run()
    assert not at.exception and at.session_state.gen_run.done
    assert at.button(key="gen_step").disabled and at.button(key="gen_play").disabled
    assert at.session_state.gen_run.chosen == [eos]


def toasts(at) -> str:
    return "\n".join(t.value for t in at.toast)


@pytest.mark.parametrize("low, high", [("logp", "tpsa"), ("tpsa", "logp")])
def test_out_of_range_and_junk_query_parameters_are_clamped_with_a_notice(dashboard, low, high):
    at = app_test()
    params = {
        low: "-1e9", high: "inf", "temperature": "nan", "top_k": "99999",
        "seed": "-5", "utm_source": "mail", "x" * 50: "y" * 5000, "page": "<script>",
    }  # fmt: skip
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("pages/generate.py").run()
    assert not at.exception
    notes = toasts(at)
    for shown in (f"?{low}=-1e9 is outside", f"?{high}=inf is outside", "?temperature=nan"):
        assert shown in notes, notes
    assert "?seed=-5 is outside" in notes
    low_box, high_box = (at.number_input(key=f"gen_{p}_num") for p in (low, high))
    assert low_box.value == pytest.approx(low_box.min, abs=0.01)
    assert high_box.value == pytest.approx(high_box.max, abs=0.01)
    assert at.slider(key="gen_temperature").value == 1.0
    assert at.number_input(key="gen_top_k").value == at.number_input(key="gen_top_k").max
    assert at.number_input(key="gen_seed").value == 0
    at.button(key="gen_step").click().run()
    assert not at.exception and at.session_state.gen_run.chosen


@pytest.mark.parametrize("value", ["abc", "", "0x10", "1,5"])
def test_non_numeric_query_parameter_is_ignored_with_a_notice(dashboard, value):
    at = app_test()
    at.query_params["logp"] = value
    at.run()
    at.switch_page("pages/generate.py").run()
    assert not at.exception
    assert "Ignored ?logp=" in toasts(at)


def test_full_width_digits_are_a_number(dashboard):
    """Python reads "１２" as 12: it is taken as a number (clamped to the range), not ignored."""
    at = app_test()
    at.query_params["logp"] = "１２"
    at.run()
    at.switch_page("pages/generate.py").run()
    assert not at.exception
    assert "Ignored ?logp=" not in toasts(at)
    assert "?logp=１２ is outside" in toasts(at)


@pytest.mark.parametrize(
    "name",
    ["../x", "..", "/etc", "/tmp/checkpoints/default", "a/../default", "..\\default", ".git",
     "default\x00", "default/", "~root", "%2e%2e%2fdefault", "x" * 5000],
)  # fmt: skip
def test_checkpoint_paths_in_the_url_are_refused(dashboard, name):
    at = app_test()
    at.query_params["checkpoint"] = name
    at.run()
    assert not at.exception
    assert at.session_state.checkpoint == "default"
    assert at.query_params["checkpoint"] == "default"
    assert at.sidebar.warning, "no notice for the refused checkpoint"
    assert all(len(w.value) < 200 for w in at.sidebar.warning)


def test_attention_page_bounds_a_typed_smiles(dashboard):
    at = app_test().run()
    at.switch_page("pages/attention.py").run()
    box = at.text_input(key="att_smiles")
    assert box.max_chars == MAX_SMILES_CHARS  # the browser stops typing there
    start = time.perf_counter()
    box.set_value("C" * 50_000).run()
    assert not at.exception and time.perf_counter() - start < 10
    assert len(at.text_input(key="att_smiles").value) <= MAX_SMILES_CHARS
    assert any("cannot read this molecule" in e.value for e in at.error)


# ---------------------------------------------------------------- paths stay in their folders

path_text = hs.text(alphabet=hs.characters(codec="utf-8"), max_size=20) | hs.sampled_from(
    ["..", ".", "../default", "a/b", "/abs", "C:\\x", "a\x00b", " ", "default", "run-1"]
)


@FEW
@given(path_text)
def test_safe_checkpoint_name_stays_under_the_checkpoints_folder(tmp_path_factory, name):
    from ui.common import checkpoints_root, safe_checkpoint_name

    root = tmp_path_factory.getbasetemp() / "root"
    root.mkdir(exist_ok=True)
    os.environ["MOLSCOPE_CHECKPOINTS"] = str(root)
    try:
        safe = safe_checkpoint_name(name)
        assert checkpoints_root() == root
    finally:
        del os.environ["MOLSCOPE_CHECKPOINTS"]
    if safe is not None:
        assert safe == name and (root / safe).resolve().parent == root.resolve()
        assert not safe.startswith(".") and "/" not in safe and "\\" not in safe


@FEW
@given(path_text)
def test_run_names_stay_under_their_folders(tmp_path_factory, name):
    root = tmp_path_factory.getbasetemp()
    try:
        runs.validate_name(name)
    except runs.RunError as exc:
        assert "not allowed" in str(exc)
        return
    for folder in (root / "runs", root / "checkpoints"):
        assert (folder / name).resolve().parent == folder.resolve()
    argv = runs.train_command(name, {}, checkpoints_root=root / "checkpoints")
    assert argv[argv.index("--out") + 1] == str(root / "checkpoints" / name)


@pytest.mark.parametrize("value", ["--resume", "-1e5x", "a\nb", "", "$(rm -rf /)"])
def test_training_options_cannot_smuggle_flags(value):
    try:
        argv = runs.train_command("ok", {"data": value})
    except runs.RunError:
        return
    assert argv[-2:] == ["--data", value] and argv.count("--resume") == 0


# ---------------------------------------------------------------- server settings and code


def test_streamlit_config_keeps_the_dashboard_local():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True
    assert server["maxUploadSize"] == MAX_UPLOAD_BYTES >> 20 == 5
    assert server["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False


UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
UNSAFE_METHODS = {"exec_module", "read_pickle", "run_path", "run_module"}
UNSAFE_MODULES = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "torch", "yaml"}
# RDKit's own SA-score module, loaded from the installed RDKit wheel (it unpickles its shipped
# fpscores.pkl.gz): trusted package code, never data from a user
ALLOWED = {("core/chem.py", "exec_module")}


def test_no_pickle_eval_or_exec_on_data_from_disk_or_network():
    found = []
    files = [*sorted((ROOT / "core").glob("*.py")), *sorted((ROOT / "pages").glob("*.py"))]
    for file in [*files, ROOT / "app.py"]:
        rel = file.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                bad = {n.split(".")[0] for n in names} & UNSAFE_MODULES
                found += [(rel, b) for b in bad]
            elif isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in UNSAFE_BUILTINS:
                    found.append((rel, func.id))
                name = getattr(func, "attr", "")
                if name in UNSAFE_METHODS and (rel, name) not in ALLOWED:
                    found.append((rel, name))
                if any(k.arg == "allow_pickle" for k in node.keywords):
                    found.append((rel, "allow_pickle"))
    assert found == []


def test_checkpoint_loading_reads_only_json_and_safetensors(tmp_path):
    from core.checkpoint import load_checkpoint, load_training_state, save_checkpoint

    bundle = tiny_bundle()
    save_checkpoint(tmp_path / "ck", bundle, {"w": mx.zeros(3)}, {"step": 1})
    suffixes = {p.suffix for p in (tmp_path / "ck").iterdir()}
    assert suffixes <= {".json", ".safetensors", ".jsonl"}
    load_checkpoint(tmp_path / "ck")
    load_training_state(tmp_path / "ck")
