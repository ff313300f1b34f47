"""Names come from the registries (DESIGN.md): a model family with its own config, a discriminator, a
metric and a command registered from outside the package go through `train`, `sample`, `evaluate` and
`report` with no other file edited (the counts in docs/architecture.md's "How to add"); no module lists
registered names by hand; resume rules are allow-lists for every kind of run."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import one_line_error
from postergen.models.verdict import Verdict

SRC = Path(__file__).parents[1] / "src" / "postergen"


# ---------------------------------------------------------------------------------------------
# A toy family (its own config, with an option of its own), a toy D, a toy metric, a toy command

INITIALISED: list[str] = []  # which models ran their own init_weights


@dataclass
class ToyConfig:
    height: int = 32
    width: int = 32
    z_dim: int = 100
    n_genres: int = 0
    discriminator: str = "dcgan"
    toy_width: int = field(default=16, metadata={"doc": "hidden units of the toy generator"})

    def __post_init__(self):
        if self.toy_width < 1:
            raise ValueError(f"--toy-width must be at least 1 (got {self.toy_width})")


class ToyGenerator(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(nn.Linear(cfg.z_dim + cfg.n_genres, cfg.toy_width), nn.ReLU(),
                                 nn.Linear(cfg.toy_width, 3 * cfg.height * cfg.width))

    def init_weights(self) -> None:
        INITIALISED.append("G")

    def forward(self, z: torch.Tensor, genres: torch.Tensor | None = None) -> torch.Tensor:
        z = z.reshape(len(z), -1)
        genres = z.new_zeros(len(z), self.cfg.n_genres) if genres is None else genres.to(z.dtype)
        return torch.tanh(self.net(torch.cat([z, genres], 1))).view(len(z), 3, self.cfg.height, self.cfg.width)


class ToyDiscriminator(nn.Module):
    ABOUT = "a toy that also scores real images' brightness"
    STEP_OPTIONS = {"is_real": "real"}
    LOSS_PARTS = {"aux": "toy"}

    def __init__(self, cfg) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 16, 1)

    def init_weights(self) -> None:
        INITIALISED.append("D")

    def forward(self, x: torch.Tensor, genres: torch.Tensor | None = None, is_real: bool = False):
        logits = self.head(F.adaptive_avg_pool2d(x, 4).flatten(1)).flatten()
        return Verdict(logits, aux=0.01 * x.mean().square()) if is_real else logits


@dataclass
class ToyMetricConfig:
    scale: float = 1.0


def toy_metric(inputs, cfg: ToyMetricConfig) -> dict:
    return {"value": 0.5 * cfg.scale, "spread": 2.0}  # constants: the report lists them in words


def _add_toy_params(sub) -> None:
    p = sub.add_parser("toy-params", help="count a run's generator parameters")
    p.add_argument("run", type=Path)
    p.set_defaults(func=_run_toy_params)


def _run_toy_params(args) -> None:
    from postergen.models.dcgan import count_params
    from postergen.weights import load_generator

    G, _ = load_generator(args.run)
    print(f"{count_params(G)} parameters")


@pytest.fixture
def toys(monkeypatch):
    """The toys registered through the registries' own tables, for one test."""
    from postergen import cli
    from postergen.metrics.registry import METRICS, Metric
    from postergen.models import registry

    monkeypatch.setitem(registry.ARCHS, "toy",
                        registry.Arch("gan", ToyConfig, registry.gan(ToyGenerator), ToyGenerator, "a toy"))
    monkeypatch.setitem(registry.DISCRIMINATORS, "toy", ToyDiscriminator)
    monkeypatch.setitem(METRICS, "toy", Metric("toy", toy_metric, ToyMetricConfig, headline="value", group="pixel"))
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, _add_toy_params])
    INITIALISED.clear()


TOY = ["--arch", "toy", "--discriminator", "toy", "--batch", "8", "--no-tensorboard", "--device", "cpu",
       "--log-every", "2", "--sample-every", "2", "--checkpoint-every", "2"]


@pytest.mark.slow  # trains, evaluates and reports: about 20 s on 2 cores
def test_a_registered_family_d_metric_and_command_go_through_every_command(toys, cli, tiny_dataset, tmp_path,
                                                                           capsys):
    run, data = tmp_path / "run", tiny_dataset
    with pytest.raises(SystemExit):
        cli("train", "--help")
    shown = " ".join(capsys.readouterr().out.split())
    assert "fastgan (lightweight, skip-layer excitation) or toy (a toy)" in shown  # --arch
    assert "or toy (a toy that also scores real images' brightness)" in shown  # --discriminator
    assert "--toy-width TOY_WIDTH hidden units of the toy generator (--arch toy; default 16)" in shown

    code, out, err = cli("train", data, "-o", run, *TOY, "--toy-width", "12", "--steps", "4")
    assert code == 0, err
    assert INITIALISED == ["G", "D"]  # each model's own init, once
    config = json.loads((run / "config.json").read_text())
    assert (config["kind"], config["arch"], config["model"]["toy_width"]) == ("gan", "toy", 12)
    assert config["train"]["model_options"] == {"toy_width": 12}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["loss_toy"] > 0 for r in rows if "loss_d" in r)  # the part the D says it reports

    code, out, err = cli("train", data, "-o", run, *TOY, "--steps", "6", "--resume")
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["model"]["toy_width"] == 12  # the run's own

    code, out, err = cli("sample", run, "-o", tmp_path / "samples", "--n", "2")
    assert code == 0, err
    assert list((tmp_path / "samples").glob("*.png"))

    code, out, err = cli("evaluate", run, "--data", data, "--n", "8", "--metrics", "toy", "--all-checkpoints")
    assert code == 0, err
    assert json.loads((run / "eval.json").read_text())["metrics"]["toy"] == {"value": 0.5, "spread": 2.0}

    code, out, err = cli("report", run)
    assert code == 0, err
    page = (run / "report.html").read_text()
    assert "toy.value = 0.5" in page and "toy.spread =" not in page  # the curves: the headline alone

    code, out, err = cli("toy-params", run)
    assert code == 0 and re.fullmatch(r"\d+ parameters", out.strip()), err


@pytest.mark.parametrize("extra, says", [
    (["--toy-width", "0"], "--toy-width must be at least 1"),
    (["--arch", "dcgan", "--toy-width", "3"], "--toy-width is not an option of --arch dcgan"),
    (["--arch", "nope"], "--arch must be dcgan, fastgan or toy, not 'nope'"),
    (["--discriminator", "nope"], "--discriminator must be dcgan, projected, ensemble, fastgan or toy"),
])
def test_a_registered_familys_options_are_checked_in_one_line(toys, cli, tiny_dataset, tmp_path, extra, says):
    code, _, err = cli("train", tiny_dataset, "-o", tmp_path / "run", *TOY, "--steps", "2", *extra)
    one_line_error(code, err, "train", says)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# No hand-written lists of registered names

def _registered() -> dict[str, set[str]]:
    from postergen.metrics import METRICS
    from postergen.models import registry

    return {"architectures": set(registry.ARCHS), "discriminators": set(registry.DISCRIMINATORS),
            "metrics": set(METRICS)}


# Where each name is written once: the model registry, the SR nets it lists, and the metric modules,
# which register their names (and name their results after them).
REGISTRIES = {"postergen.models.registry", "postergen.models.sr", "postergen.metrics"}


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of docstring nodes: prose about the models, not a list the code uses."""
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def hand_written(source: str, registered: dict[str, set[str]], registry: bool = False) -> list[str]:
    """Where `source` writes registered names itself: a tuple, list, set or dict of two or more names of
    one registry ("fd.value" names fd), a string listing them ("fd,kid"), or anywhere, registries too, a
    comparison with a model's name (== "ensemble"). A registry (`registry`) may list its own names."""
    tree = ast.parse(source)
    docs, models = _docstrings(tree), registered["architectures"] | registered["discriminators"]
    found = []
    for node in ast.walk(tree):
        items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and not registry:
            strings = [e.value.split(".")[0] for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            for kind, names in registered.items():
                if len(set(strings) & names) >= 2:
                    found.append(f"line {node.lineno}: {kind} {sorted(set(strings) & names)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs and not registry:
            for kind, names in registered.items():
                words = re.findall(r"[\w-]+(?:\s*,\s*[\w-]+)+", node.value)
                if any(len(set(re.split(r"\s*,\s*", w)) & names) >= 2 for w in words):
                    found.append(f"line {node.lineno}: {kind} in {node.value[:60]!r}")
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = [c.value for side in sides for c in [side, *getattr(side, "elts", [])] if isinstance(c, ast.Constant)]
            if set(named) & models:
                found.append(f"line {node.lineno}: compares with {sorted(set(named) & models)}")
    return found


def test_no_module_lists_registered_names_by_hand():
    registered = _registered()
    def is_registry(name: str) -> bool:
        return any(name == r or name.startswith(r + ".") for r in REGISTRIES)

    found = [f"{_module(p)} {where}" for p in sorted(SRC.rglob("*.py"))
             for where in hand_written(p.read_text(), registered, is_registry(_module(p)))]
    assert found == []


def test_the_scan_finds_what_it_looks_for():
    registered = {"architectures": {"dcgan", "fastgan"}, "discriminators": {"ensemble"}, "metrics": {"fd", "kid"}}
    assert len(hand_written('GENERATORS = ("dcgan", "fastgan")', registered)) == 1
    assert len(hand_written('help = "subset of fd,kid (default: all)"', registered)) == 1
    assert len(hand_written('if cfg.discriminator == "ensemble":\n    pass', registered)) == 1
    assert len(hand_written('HEADLINE = ("fd.value", "kid.mean")', registered)) == 1
    assert len(hand_written('net = A if cfg.arch == "dcgan" else B', registered, registry=True)) == 1
    assert len(hand_written('init = cfg.discriminator in ("dcgan", "x")', registered, registry=True)) == 1
    assert hand_written('NAMES = {"dcgan": A, "fastgan": B}', registered, registry=True) == []
    assert hand_written('"""dcgan, fastgan: prose."""\nx = ("dcgan", "other")', registered) == []


# ---------------------------------------------------------------------------------------------
# Resume rules: one kind of list (what a resume may change) for every kind of run

def test_resume_rules_are_allow_lists_so_a_new_field_stays_fixed(tmp_path):
    from postergen.config import RESUMABLE, TrainConfig
    from postergen.engine.run import resume_config
    from postergen.engine.sr import SR_RESUMABLE, SRTrainConfig
    from postergen.errors import UserError

    for resumable, config in ((RESUMABLE, TrainConfig), (SR_RESUMABLE, SRTrainConfig)):
        assert resumable < {f.name for f in dataclasses.fields(config)}
        assert "steps" in resumable and "seed" not in resumable

    @dataclass
    class Later:  # a config that grew a field after the allow-list was written
        steps: int = 1
        new_option: int = 0

    assert resume_config(Later, {"steps": 1, "new_option": 0}, {"steps": 5}, {"steps"}, tmp_path).steps == 5
    with pytest.raises(UserError, match=r"cannot change --new-option \(0 -> 3\)"):
        resume_config(Later, {"steps": 1, "new_option": 0}, {"new_option": 3}, {"steps"}, tmp_path)
