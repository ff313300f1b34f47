"""report: a self-contained HTML page with every image embedded; failure modes on synthetic metrics."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from postergen import __version__
from postergen.diagnose import diagnose
from postergen.errors import UserError
from postergen.report import report

SECTIONS = {"losses", "health", "progression", "genres", "real", "evaluation"}


class Page(HTMLParser):
    """Collects <img> attributes, section ids, every src/href, and the visible text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images, self.sections, self.links, self.text = [], set(), [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "section":
            self.sections.add(attrs.get("id"))
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v]

    def handle_data(self, data):
        self.text.append(data)

    def image(self, alt: str) -> Image.Image:
        found = [a for a in self.images if a.get("alt") == alt]
        assert found, f"no image {alt!r}"
        return decode(found[0]["src"])


def decode(src: str) -> Image.Image:
    head, data = src.split(",", 1)
    assert head in ("data:image/png;base64", "data:image/gif;base64", "data:image/webp;base64")
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    assert image.format in ("PNG", "GIF", "WEBP")
    return image


def render_page(run: Path, out: Path, **kwargs) -> Page:
    path = report(run, out, **kwargs)
    assert path == out
    return Page(out.read_text(encoding="utf-8"))


def copy_run(tiny_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


# ---------------------------------------------------------------------------------------------
# The page

@pytest.fixture(scope="module")
def tiny_report(tiny_run: Path, tmp_path_factory) -> Path:
    """The report of the shared tiny run, written once outside the run folder."""
    return report(tiny_run, tmp_path_factory.mktemp("report") / "report.html", sample_n=3)


def test_report_embeds_every_image_and_section(tiny_run: Path, tiny_report: Path):
    page = Page(tiny_report.read_text(encoding="utf-8"))
    assert SECTIONS <= page.sections
    images = [decode(a["src"]) for a in page.images]  # every <img> is a data URI that PIL opens
    assert len(images) >= 5
    config = json.loads((tiny_run / "config.json").read_text())
    H, n_genres = config["model"]["height"], len(config["genres"])
    assert page.image("loss curves of G and D, and D(x) / D(G(z))").format == "PNG"
    animation = page.image("fixed-noise samples over training")
    assert animation.format in ("WEBP", "GIF")
    assert getattr(animation, "n_frames", 1) == len(list((tiny_run / "samples").glob("step-*.png")))
    assert any(a["alt"].startswith("samples at step ") for a in page.images)
    assert page.image("final model samples").height == n_genres * (H + 2) + 2  # one row per genre
    assert page.image("final model samples").width > 3 * (H + 2) + 2  # plus the genre names
    assert page.image("real posters").size == page.image("generated posters").size
    text = " ".join(page.text)
    assert "stable" in text and "horror" in text and "postergen evaluate" in text
    assert f"postergen {__version__}" in text


def test_report_is_self_contained(tiny_report: Path):
    raw = tiny_report.read_text(encoding="utf-8")
    assert all(link.startswith(("data:", "#")) for link in Page(raw).links)
    assert "http://" not in raw and "https://" not in raw and "<script" not in raw and "<link" not in raw


def test_progression_shows_a_dozen_stills_and_animates_all(tiny_run: Path, tmp_path: Path):
    run = copy_run(tiny_run, tmp_path)
    grid = Image.open(next((run / "samples").glob("step-*.png"))).convert("RGB")
    for step in range(10, 150, 10):  # 14 more grids, each a little brighter
        grid.point(lambda v, s=step: min(255, v + s // 3)).save(run / "samples" / f"step-{step:07d}.png")
    page = render_page(run, tmp_path / "report.html", sample_n=2)
    stills = [a["alt"] for a in page.images if a["alt"].startswith("samples at step ")]
    assert len(stills) == 12 and stills[0] == "samples at step 2" and stills[-1] == "samples at step 140"
    assert page.image("fixed-noise samples over training").n_frames == 15


def test_report_shows_evaluation_files(tiny_run: Path, tmp_path: Path):
    run = copy_run(tiny_run, tmp_path)
    (run / "eval.json").write_text(json.dumps({
        "step": 2, "checkpoint": "latest.pt", "n": 48,
        "metrics": {"swd": {"mean": 0.1234567, "per_scale": [0.1, 0.2]}, "diversity": {"lpips": 0.4},
                    "fid": {"skipped": "no <weights>"}, "memorization": {"closest": list(range(200))}},
        "seconds": {"swd": 1.5}}))
    (run / "eval.jsonl").write_text("".join(json.dumps(
        {"step": s, "n": 48, "metrics": {"swd": {"mean": 1 / s}, "diversity": {"lpips": 0.1 * s}},
         "seconds": {"swd": 1.0}}) + "\n" for s in (1, 2, 3)))
    (run / "eval").mkdir()
    Image.new("RGB", (40, 20), "red").save(run / "eval" / "nearest_pairs.png")
    page = render_page(run, tmp_path / "report.html", sample_n=2)
    text = " ".join(page.text)
    assert "metrics.swd.mean" in text and "0.1235" in text and "metrics.diversity.lpips" in text
    assert "no <weights>" in text and "no &lt;weights&gt;" in (tmp_path / "report.html").read_text()
    assert "200 items" in text and "postergen evaluate" not in text
    assert page.image("evaluation metrics against step").format == "PNG"
    assert page.image("nearest_pairs.png").size == (40, 20)


def test_missing_dataset_is_a_note(tiny_run: Path, tmp_path: Path):
    run = copy_run(tiny_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["path"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    page = render_page(run, tmp_path / "report.html", sample_n=2)
    assert "is gone" in " ".join(page.text)
    assert "real" in page.sections and page.image("final model samples")


def test_unconditional_model_gives_one_square_grid(tiny_dataset: Path):
    from postergen.models.dcgan import Generator, ModelConfig
    from postergen.report.sections import RunInfo, genre_grids, real_vs_generated

    model = ModelConfig(height=32, width=32, z_dim=16, ngf=8, ndf=8)
    config = {"model": vars(model), "genres": [], "train": {}, "dataset": {"path": str(tiny_dataset)}}
    info = RunInfo(Path("run"), config, [], [], G=Generator(model).eval(), step=0)
    page = Page(genre_grids(info, 3) + real_vs_generated(info, 3))
    assert page.image("final model samples").size == (3 * 34 + 2, 3 * 34 + 2)
    assert page.image("generated posters").size == page.image("real posters").size
    assert "unconditional" in " ".join(page.text)


def test_report_explains_failures_in_words(tiny_run: Path, tmp_path: Path):
    run = copy_run(tiny_run, tmp_path)
    d_real, d_fake = np.full(20, 0.7), np.full(20, 0.35)
    d_real[5:15], d_fake[5:15] = 0.99, 0.01
    lines = rows(n=20, every=50, d_real=d_real, d_fake=d_fake)
    lines[-1]["loss_g"] = math.nan
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    text = " ".join(render_page(run, tmp_path / "report.html", sample_n=2).text)
    assert "D overpowered G from step 300 to step 750" in text and "NaN" in text and "Healthy" not in text


def test_not_a_run_folder_is_a_user_error(tmp_path: Path):
    for run in (tmp_path / "missing", tmp_path):
        with pytest.raises(UserError) as e:
            report(run)
        assert "\n" not in str(e.value) and str(run) in str(e.value)
    with pytest.raises(UserError, match="config.json"):
        report(tmp_path)


# ---------------------------------------------------------------------------------------------
# Failure modes on synthetic metric lines

def rows(n: int = 60, every: int = 100, seed: int = 0, **series) -> list[dict]:
    """Healthy-looking lines (small noise around D(x)=0.7, D(G(z))=0.35); `series` overrides a key."""
    rng = np.random.default_rng(seed)
    base = {"loss_d": 1.2 + 0.05 * rng.standard_normal(n), "loss_g": 1.0 + 0.1 * rng.standard_normal(n),
            "d_real": 0.7 + 0.03 * rng.standard_normal(n), "d_fake": 0.35 + 0.03 * rng.standard_normal(n)}
    base.update({k: np.asarray(v, dtype=float) for k, v in series.items()})
    return [{"step": (i + 1) * every, **{k: float(v[i]) for k, v in base.items()}} for i in range(n)]


def test_healthy_rows_give_no_findings():
    assert diagnose(rows()) == []
    assert diagnose(rows(n=3000, seed=1)) == []  # long noisy logs: extremes alone are no swings
    assert diagnose(rows(n=3)) == [] and diagnose([]) == []


def test_d_overpowering_names_its_step_range():
    d_real, d_fake = np.full(60, 0.7), np.full(60, 0.35)
    d_real[20:31], d_fake[20:31] = 0.99, 0.01  # steps 2100..3100
    found = [f for f in diagnose(rows(d_real=d_real, d_fake=d_fake)) if f.kind == "overpowering"]
    assert [(f.start, f.end) for f in found] == [(2100, 3100)]
    assert "step 2100 to step 3100" in found[0].message
    assert "--preset stable" in found[0].message and "--d-every 2" in found[0].message
    assert "--lr-d" in found[0].message and "augment" in found[0].message.lower()


def test_short_saturation_is_not_overpowering():
    d_real, d_fake = np.full(60, 0.7), np.full(60, 0.35)
    d_real[10:12], d_fake[10:12] = 0.99, 0.01
    assert diagnose(rows(d_real=d_real, d_fake=d_fake)) == []


def test_oscillation_names_the_swings():
    d_fake = 0.4 + 0.3 * np.sin(2 * math.pi * np.arange(60) / 12)  # a cycle every 12 lines = 1200 steps
    found = [f for f in diagnose(rows(d_fake=d_fake)) if f.kind == "oscillation"]
    assert len(found) == 1 and "D(G(z))" in found[0].message
    period = int(re.search(r"about every (\d+) steps", found[0].message).group(1))
    assert 1100 <= period <= 1300 and f"highs at steps {found[0].start}, " in found[0].message
    assert found[0].end - found[0].start >= 3 * 1200


def test_collapse_cycles_in_g_loss_are_not_a_climb():
    square = np.where((np.arange(120) // 10) % 2 == 0, 0.5, 4.0)  # ends in a high phase
    noisy = square + 0.3 * np.random.default_rng(6).standard_normal(120)
    found = diagnose(rows(n=120, every=25, loss_g=noisy))
    assert [f.kind for f in found] == ["oscillation"] and "G loss" in found[0].message


def test_g_loss_climbing_and_nan():
    loss_g = np.concatenate([np.full(30, 1.0), np.linspace(1.0, 4.0, 30)])
    assert [f.kind for f in diagnose(rows(loss_g=loss_g))] == ["g_climbing"]
    bad = rows()
    bad[40]["loss_d"] = math.nan
    found = diagnose(bad)
    assert found[0].kind == "nan" and found[0].start == 4100 and "step 4100" in found[0].message


def test_cli_report(cli, tiny_run, tmp_path):
    out = tmp_path / "r.html"
    code, stdout, err = cli("report", tiny_run, "-o", out, "--n", "2")
    assert code == 0, err
    assert out.is_file() and str(out) in stdout and "<html" in out.read_text()[:500].lower()
    code, _, err = cli("report", tmp_path / "missing")
    assert code == 2 and err.count("\n") == 1


def test_cli_report_takes_device_auto(cli, tiny_run, tmp_path):
    """--device auto, as its help says (it was passed on to torch as a device name and crashed)."""
    out = tmp_path / "r.html"
    code, _, err = cli("report", tiny_run, "-o", out, "--n", "2", "--device", "auto")
    assert code == 0, err
    assert out.is_file()
