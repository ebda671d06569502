"""report.html: one self-contained page that shows a run (or compares runs) at a glance.

Everything comes from the run directory (config.json, metrics.jsonl, samples/), so a page can be rebuilt at any time
and `gan-job report` works on any run. Charts are plotly figures; plotly.js (about 4.8 MB) and the sample grids (as
data URIs) are embedded, so the page works offline and wherever the file is copied.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2
import markupsafe
import plotly.io as pio
from plotly.offline import get_plotlyjs

from job.quality import COVERED, collapsed
from job.rundir import RunDir, data_set_of
from job.timings import duration
from serving.files import atomic_write_text

log = logging.getLogger(__name__)

RUNNING, FINISHED, INTERRUPTED, FAILED = "running", "finished", "interrupted", "failed"
REPORT_NAME = "report.html"

# The curves over steps: metrics.jsonl key -> (chart title, y-axis title, legend name).
CURVES = {
    "frechet_distance": ("Fréchet distance (lower is better)", "Fréchet distance", "Fréchet distance"),
    "classes_covered": ("Classes covered (at least 5% of the samples)", "classes", "classes covered"),
    "label_accuracy": ("Drawn as the class asked for", "share", "drawn as asked"),
    "least_variety": ("Variety of the least varied class (1: as varied as the data)", "variety", "least variety"),
    "d_loss": ("Discriminator loss", "loss", "discriminator"),
    "g_loss": ("Generator loss", "loss", "generator"),
    "d_accuracy": ("Discriminator accuracy", "accuracy", "discriminator accuracy"),
    "steps_per_s": ("Speed", "steps/s", "steps/s"),
}
# A run's page draws both losses in one chart; a comparison draws one chart per key, a curve per run.
RUN_CHARTS = [
    ["frechet_distance"],
    ["classes_covered"],
    ["label_accuracy"],
    ["least_variety"],
    ["d_loss", "g_loss"],
    ["d_accuracy"],
    ["steps_per_s"],
]


@dataclass
class Run:
    """What a run directory holds, read tolerantly: metrics lines it does not know are skipped."""

    root: Path
    config: dict
    metrics: list[dict]  # the lines with a step, in order
    timings: dict | None = None  # the newest line with a `timings` key, when the run has one
    samples: list[tuple[int, Path]] = field(default_factory=list)  # (step, grid) from the fixed latents
    reals: Path | None = None

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def steps(self) -> int | None:
        return self.config.get("steps")

    @property
    def step(self) -> int:
        return self.metrics[-1]["step"] if self.metrics else 0

    @property
    def class_names(self) -> list[str]:
        """The data's class names, index = label, as config.json records them."""
        return data_set_of(self.config)["class_names"]

    @property
    def quality(self) -> dict | None:
        """The last line with a quality measurement."""
        return next((line for line in reversed(self.metrics) if "frechet_distance" in line), None)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        lines = [line for line in self.metrics if isinstance(line.get(key), int | float)]
        return [line["step"] for line in lines], [line[key] for line in lines]


def read_run(root: Path) -> Run:
    run_dir = RunDir(root)
    try:
        config = json.loads(run_dir.config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        config = {}
    metrics, timings = [], None
    if run_dir.metrics.exists():
        for text in run_dir.metrics.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
            except ValueError:  # a line torn by a kill
                continue
            if not isinstance(line, dict):
                continue
            if isinstance(line.get("timings"), dict):
                timings = line["timings"]
            elif isinstance(line.get("step"), int):
                metrics.append(line)
    samples = sorted((int(path.stem.split("_")[1]), path) for path in run_dir.samples.glob("step_*.png"))
    reals = run_dir.samples / "reals.png"
    return Run(Path(root), config, metrics, timings, samples, reals if reals.exists() else None)


def ranked(runs: list[Run]) -> list[Run]:
    """Best first: the lowest final Fréchet distance; on a tie more classes covered, then the order given.

    Runs without a quality measurement come last.
    """

    def key(indexed: tuple[int, Run]) -> tuple:
        index, run = indexed
        quality = run.quality
        if quality is None:
            return (1, 0.0, 0, index)
        return (0, quality["frechet_distance"], -quality.get("classes_covered", 0), index)

    return [run for _, run in sorted(enumerate(runs), key=key)]


def write_run_report(root: Path, status: str, device: str | None = None) -> Path:
    """Write ROOT/report.html atomically, from what the run directory holds now."""
    path = Path(root) / REPORT_NAME
    atomic_write_text(path, render_run(read_run(root), status, device))
    return path


@contextlib.contextmanager
def kept_current(root: Path, device: str, interrupted: type[BaseException]) -> Iterator[Callable[[], None]]:
    """report.html while a run trains: call the function it yields at each checkpoint (status running); on leaving,
    the status is finished, interrupted (on an `interrupted` exception) or failed.

    The page is a view of the run: a failure to write it is logged, never the end of a run.
    """

    def write(status: str) -> None:
        try:
            write_run_report(root, status, device)
        except Exception as error:
            log.warning("could not write %s: %s", Path(root) / REPORT_NAME, error)

    try:
        yield lambda: write(RUNNING)
    except interrupted:
        write(INTERRUPTED)
        raise
    except BaseException:
        write(FAILED)
        raise
    write(FINISHED)


def write_comparison(roots: list[Path], out: Path) -> Path:
    atomic_write_text(out, render_comparison([read_run(root) for root in roots]))
    return out


def render_run(run: Run, status: str, device: str | None = None) -> str:
    last = run.metrics[-1] if run.metrics else {}
    speed = last.get("steps_per_s")
    remaining = (run.steps or 0) - run.step
    eta = remaining / speed if status == RUNNING and speed and remaining > 0 else None
    charts = [_run_chart(run, keys) for keys in RUN_CHARTS if run.series(keys[0])[0]]
    if run.quality and "class_shares" in run.quality:
        charts.append(_shares_chart(run.quality, run.class_names))
    return _template("run.html").render(
        run=run,
        status=status,
        device=device,
        speed=speed,
        eta=duration(eta) if eta is not None else None,
        elapsed=duration(last["elapsed_s"]) if "elapsed_s" in last else None,
        charts=charts,
        images={path: _data_uri(path) for path in _images(run)},
        config=_flat(run.config),
        timings=_flat(run.timings) if run.timings else None,
        # Whether the last measurement says a class is drawn as a few images, late enough in the run to mean it.
        collapsed=bool(run.quality)
        and collapsed(run.quality.get("least_variety"), run.quality["step"], run.steps or run.quality["step"]),
        **_page_parts(),
    )


def render_comparison(runs: list[Run]) -> str:
    charts = [_comparison_chart(runs, key) for key in CURVES if any(run.series(key)[0] for run in runs)]
    configs = {run.name: _flat(run.config) for run in runs}
    keys = sorted({key for config in configs.values() for key in config} - {"out"})
    differing = [key for key in keys if len({json.dumps(config.get(key)) for config in configs.values()}) > 1]
    # The ranking shows the differences that change a result, not where a run's files live.
    ranking_keys = [key for key in differing if key != "quality_cache"]
    return _template("compare.html").render(
        runs=runs,
        ranking=ranked(runs),
        charts=charts,
        images={path: _data_uri(path) for run in runs for path in _images(run)[-1:]},
        configs=configs,
        keys=differing + [key for key in keys if key not in differing],
        differing=set(differing),
        ranking_keys=ranking_keys,
        conditional=any("label_accuracy" in (run.quality or {}) for run in runs),
        **_page_parts(),
    )


def _run_chart(run: Run, keys: list[str]) -> dict:
    title, axis, _ = CURVES[keys[0]] if len(keys) == 1 else ("Losses", "loss", None)
    traces = [(CURVES[key][2], key, *run.series(key)) for key in keys]
    return _chart("+".join(keys), title, axis, traces)


def _comparison_chart(runs: list[Run], key: str) -> dict:
    title, axis, _ = CURVES[key]
    return _chart(key, title, axis, [(run.name, key, *run.series(key)) for run in runs])


def _chart(chart_id: str, title: str, axis: str, traces: list[tuple[str, str, list, list]]) -> dict:
    """A line chart over steps; each trace is (legend name, metrics.jsonl key, steps, values)."""
    colours = _chart_style()["layout"]["colorway"]
    data = [
        # A colour per trace position, so that a run keeps its colour in every chart (even where one has no data).
        {"type": "scatter", "mode": "lines+markers", "name": name, "meta": key, "x": steps, "y": values}
        | {"line": {"color": colours[index % len(colours)]}}
        for index, (name, key, steps, values) in enumerate(traces)
        if steps
    ]
    return {"id": f"chart-{chart_id}", "figure": {"data": data, "layout": _layout(title, axis, len(traces) > 1)}}


def _shares_chart(quality: dict, class_names: list[str]) -> dict:
    """A bar per class, named as the data names it (the index where config.json names fewer classes)."""
    shares = quality["class_shares"]
    names = class_names if len(class_names) == len(shares) else [str(index) for index in range(len(shares))]
    layout = _layout(f"Share of each class at step {quality['step']}", "share", legend=False)
    # Categories: class names such as "3" stay labels, not numbers on a continuous axis.
    layout["xaxis"] |= {"title": {"text": "class"}, "type": "category"}
    covered = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": COVERED, "y1": COVERED}
    layout["shapes"] = [covered | {"line": {"dash": "dot"}}]
    layout["annotations"] = [
        {
            "text": "5%: covered",
            "xref": "paper",
            "x": 1,
            "y": COVERED,
            "showarrow": False,
            "xanchor": "right",
            "yanchor": "bottom",
        }
    ]
    bars = {
        "type": "bar",
        "x": names,
        "y": shares,
        "meta": "class_shares",
    }
    return {"id": "chart-class_shares", "figure": {"data": [bars], "layout": layout}}


def _layout(title: str, axis: str, legend: bool) -> dict:
    # Plain plotly figure dicts, drawn (and checked) by plotly.js in the page: building them as plotly.py objects
    # costs about 0.3 s a page on a 50,000-step run, written every checkpoint. The page adds the plotly_white style.
    return {
        "title": {"text": title, "x": 0.02, "font": {"size": 15}},
        "height": 300,
        "margin": {"l": 55, "r": 15, "t": 45, "b": 40},
        "xaxis": {"title": {"text": "step"}},
        "yaxis": {"title": {"text": axis}} | ({"tickformat": ".1~%"} if axis == "share" else {}),
        "showlegend": legend,
        "legend": {"orientation": "h", "y": -0.25},
    }


def _images(run: Run) -> list[Path]:
    return ([run.reals] if run.reals else []) + [path for _, path in run.samples]


def _data_uri(path: Path) -> markupsafe.Markup:
    # Markup: base64 needs no HTML escaping, and escaping a megabyte of it at every checkpoint is not free.
    return markupsafe.Markup("data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii"))


def _flat(values: dict, prefix: str = "") -> dict:
    """Nested settings as one level: {"hyperparameters": {"beta_1": 0.5}} -> {"hyperparameters.beta_1": 0.5}."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _page_parts() -> dict:
    return {
        "plotly_js": _plotly_js(),
        "chart_style": _chart_style(),
        "updated": datetime.datetime.now(datetime.timezone.utc),
    }


@cache
def _chart_style() -> dict:
    # Once per page rather than in every figure: building each figure with it costs 0.1 s (plotly validates it).
    return pio.templates["plotly_white"].to_plotly_json()


@cache
def _plotly_js() -> markupsafe.Markup:
    return markupsafe.Markup(get_plotlyjs())


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("job", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    # JSON inside <script> must not close the tag early.
    environment.filters["script_json"] = lambda value: markupsafe.Markup(json.dumps(value).replace("</", "<\\/"))
    return environment


def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)
