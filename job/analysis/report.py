"""report.html: one self-contained page that shows a run (or compares runs) at a glance.

Everything comes from the run directory (config.json, metrics.jsonl, samples/), so a page can be rebuilt at any time
and `gan-job report` works on any run, or on every run below a folder. Charts are plotly figures, smoothed and drawn
over steps or wall time in the page. A run's page embeds plotly.js (about 4.8 MB) and its sample grids (as data
URIs), so it works offline and wherever the file is copied, alone; a comparison loads plotly.min.js from beside
it, written once for every comparison in that folder.

A run is read once, by `read_run`, which checks everything a page shows: a damaged run (config.json unreadable or
not a run's, metrics.jsonl unreadable) is one with a `problem`, which a comparison leaves out, saying so; metrics
lines and values of the wrong kind, and sample grids that do not read back whole, are skipped. Whatever names the
page embeds (runs, classes, settings) is escaped: by autoescape in the markup, as JSON made safe for `<script>`
blocks (`tojson`) in the charts' data.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2
import markupsafe
import plotly.io as pio
from PIL import Image, UnidentifiedImageError
from plotly.offline import get_plotlyjs

from job.analysis.quality_rules import COVERED, collapsed
from job.config import SAMPLE_IMAGES
from job.errors import ConfigError
from job.rundir.claim import FORCE_ADVICE, RunDir, data_set_of, reason, steps_on_disk
from job.rundir.timings import APART, START_STEP, WALL_TIME, duration
from serving.files import CHECKPOINTS_FOLDER, CONFIG_FILE, METRICS_FILE, RUN_MARKERS, atomic_write_bytes
from serving.images import grid_columns
from serving.model import cycling_labels
from serving.oneline import plural

log = logging.getLogger(__name__)

RUNNING, FINISHED, INTERRUPTED, FAILED = "running", "finished", "interrupted", "failed"
REPORT_NAME = "report.html"
PLOTLY_NAME = "plotly.min.js"  # beside a comparison page
REFRESH_SECONDS = 30  # a running run's page reloads itself this often (the job rewrites it at every sample grid)

# The curves over steps: metrics.jsonl key -> (chart title, y-axis title, legend name).
CURVES = {
    "frechet_distance": ("Fréchet distance (lower is better)", "Fréchet distance", "Fréchet distance"),
    "classes_covered": ("Classes covered (at least 5% of the samples)", "classes", "classes covered"),
    "label_accuracy": ("Drawn as the class asked for", "share of the samples", "drawn as asked"),
    "least_variety": ("Variety of the least varied class (1: as varied as the data)", "variety", "least variety"),
    "d_loss": ("Discriminator loss", "binary cross-entropy", "discriminator loss"),
    "g_loss": ("Generator loss", "binary cross-entropy", "generator loss"),
    "d_accuracy": ("Discriminator accuracy", "share judged right", "discriminator accuracy"),
    "d_learning_rate": ("Discriminator learning rate", "learning rate", "discriminator learning rate"),
    "g_learning_rate": ("Generator learning rate", "learning rate", "generator learning rate"),
    "steps_per_s": ("Speed (inside the training calls)", "steps/s", "steps/s"),
}
# A run's page draws related curves in one chart (title, y-axis title); a comparison one chart per key, a curve per run.
RUN_CHARTS = {
    ("frechet_distance",): None,
    ("classes_covered",): None,
    ("label_accuracy",): None,
    ("least_variety",): None,
    ("d_loss", "g_loss"): ("Losses", "binary cross-entropy"),
    ("d_accuracy",): None,
    ("d_learning_rate", "g_learning_rate"): ("Learning rates", "learning rate"),
    ("steps_per_s",): None,
}
# What the pages read of a metrics line besides its step: a number each (the curves, the training time, when the line
# was written and, on a start's first line, the step it began from)...
NUMBERS = {*CURVES, "elapsed_s", WALL_TIME, START_STEP}
SHARES = "class_shares"  # ... and a list of numbers, a class's share each
MAX_GRID_BYTES = 16_000_000  # a sample grid is some kilobytes: a larger file in samples/ is not one to embed


@dataclass
class Run:
    """What a run directory holds, as `read_run` checked it."""

    root: Path
    config: dict
    metrics: list[dict]  # the progress lines, in order: a step each, and of the values the pages show, those valid
    timings: dict | None = None  # the newest line with a `timings` key, when the run has one
    timings_steps: tuple[int | None, int | None] = (None, None)  # the steps its start began from and ended at
    samples: list[tuple[int, Path]] = field(default_factory=list)  # (step, grid) from the fixed latents
    reals: Path | None = None
    images: dict[Path, markupsafe.Markup] = field(default_factory=dict)  # each grid above as a data URI
    problem: str | None = None  # why the run cannot be shown (then it holds nothing else)
    label: str | None = None  # what a comparison calls it, where its folder's name alone is not unique

    @property
    def name(self) -> str:
        return self.label or self.root.name

    @property
    def steps(self) -> int | None:
        return self.config.get("steps")

    @property
    def step(self) -> int:
        """The step the run has reached: its last metrics line's, or its newest checkpoint's where that is later (a
        run interrupted between two log lines checkpoints the step it stopped at)."""
        logged = self.metrics[-1]["step"] if self.metrics else 0
        try:
            return max([logged, *steps_on_disk(self.root / CHECKPOINTS_FOLDER)])
        except ConfigError:  # a folder that cannot be listed: the log's step stands
            return logged

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

    def times(self, key: str) -> list[float | None]:
        """When each value of `series(key)` was written, in milliseconds since 1970 (plotly's dates); None where the
        line does not say."""
        lines = [line for line in self.metrics if isinstance(line.get(key), int | float)]
        return [1000 * line[WALL_TIME] if WALL_TIME in line else None for line in lines]

    @property
    def resumes(self) -> list[dict]:
        """Where the run was stopped and started again: the step the new start began from, when the start before
        wrote its last line and when the new one its first (milliseconds since 1970; None where not recorded)."""
        resumes = []
        for before, line in zip([{}, *self.metrics], self.metrics, strict=False):
            if line.get(START_STEP, 0) > 0:
                stopped = before.get(WALL_TIME)
                resumed = line.get(WALL_TIME)
                resumes.append(
                    {
                        "step": line[START_STEP],
                        "stopped": None if stopped is None else 1000 * stopped,
                        "resumed": None if resumed is None else 1000 * resumed,
                    }
                )
        return resumes


def read_run(root: Path) -> Run:
    """The run in `root`, checked (see the module's description). It never raises for a damaged run: its `problem`
    says what is wrong."""
    run_dir = RunDir(root)
    try:
        config = run_dir.recorded_config()
        if config is None:
            raise ConfigError(f"{root} is not a run directory: it has no config.json")
        records = run_dir.records()
    except ConfigError as error:  # the advice to --force is for gan-job train, not for a reader
        return Run(Path(root), {}, [], problem=str(error).removesuffix(FORCE_ADVICE))
    metrics, timings, timings_steps = [], None, (None, None)
    for record in records:
        if isinstance(record.get("timings"), dict):
            timings = record["timings"]
            began, ended = record.get(START_STEP), record.get("step")
            timings_steps = (began if _is_step(began) else None, ended if _is_step(ended) else None)
        elif _is_step(record.get("step")):
            metrics.append(_progress_line(record))
    reals = run_dir.samples / "reals.png"
    grids = [*run_dir.sample_grids(), (None, reals)]
    images = {path: uri for _, path in grids if (uri := _grid_uri(path)) is not None}
    samples = [(step, path) for step, path in grids if step is not None and path in images]
    return Run(Path(root), config, metrics, timings, timings_steps, samples, reals if reals in images else None, images)


def _is_step(value: object) -> bool:
    return type(value) is int and value >= 0  # bool is an int too


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _progress_line(record: dict) -> dict:
    """A metrics line with its step and, of the values the pages show, those of their kind (a finite number, or a
    list of them): a NaN or a string where a number belongs is left out, as if it had not been measured."""
    line = {key: value for key, value in record.items() if key in NUMBERS and _is_number(value)}
    shares = record.get(SHARES)
    if isinstance(shares, list) and shares and all(map(_is_number, shares)):
        line[SHARES] = shares
    return {"step": record["step"]} | line


def _grid_uri(path: Path) -> markupsafe.Markup | None:
    """A sample grid as a data URI, once it reads back whole as a PNG; None where there is none, or it does not
    (truncated, unreadable, not a PNG): said in a warning."""
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_GRID_BYTES:
            raise ValueError(f"{path.stat().st_size:,} bytes, not a sample grid")
        data = path.read_bytes()
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.verify()  # every chunk there, with its checksum: a truncated file fails
    except Exception as error:  # pillow raises many types for a damaged file; OSError for an unreadable one
        log.warning("leaving out %s: it does not read back whole (%s)", path, _why(error))
        return None
    # Markup: base64 needs no HTML escaping, and escaping a megabyte of it at every sample grid is not free.
    return markupsafe.Markup("data:image/png;base64," + base64.b64encode(data).decode("ascii"))


def _why(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not a PNG file"
    return reason(error) if isinstance(error, OSError | ValueError) else f"{type(error).__name__}: {error}"


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
    """Write ROOT/report.html atomically, from what the run directory holds now; ConfigError for a damaged run."""
    run = read_run(root)
    if run.problem:
        raise ConfigError(run.problem)
    path = Path(root) / REPORT_NAME
    _write_page(path, render_run(run, status, device))
    return path


@contextlib.contextmanager
def kept_current(root: Path, device: str, interrupted: type[BaseException]) -> Iterator[Callable[[], None]]:
    """report.html while a run trains: call the function it yields at each sample grid (status running); on
    leaving, the status is finished, interrupted (on an `interrupted` exception) or failed.

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


def write_comparison(folders: list[Path], out: Path) -> Path:
    """Write the page comparing the runs in or below `folders` to `out` (`compare`); returns `out`."""
    compare(folders, out)
    return out


def compare(folders: list[Path], out: Path) -> list[Run]:
    """Write the page comparing every run in or below `folders` (`runs_in`) to `out`, atomically, with plotly.min.js
    beside it; returns the runs it shows. A damaged run, or a folder that holds no run, is left out with a warning
    that names it and its problem; ConfigError, naming every problem, when there is nothing to compare."""
    runs, seen = [], set()
    for folder in map(Path, folders):
        roots = runs_in(folder)
        if not roots:
            problem = f"{folder} is not a run directory and holds no run (no {CONFIG_FILE} in it or below it)"
            runs.append(Run(folder, {}, [], problem=problem))
        for root in roots:
            if root.resolve() not in seen:  # a run given twice, or in two folders given
                seen.add(root.resolve())
                runs.append(read_run(root))
    runs = _told_apart(comparable(runs))
    _write_plotly_beside(out)
    _write_page(out, render_comparison(runs, plotly_src=PLOTLY_NAME))
    return runs


def _told_apart(runs: list[Run]) -> list[Run]:
    """The runs, each named by its folder's path below their common folder where two folders share a name."""
    names = [run.root.name for run in runs]
    if len(set(names)) == len(names):
        return runs
    common = Path(os.path.commonpath([run.root.resolve() for run in runs]))
    return [dataclasses.replace(run, label=str(run.root.resolve().relative_to(common))) for run in runs]


def runs_in(folder: Path) -> list[Path]:
    """The run folders in or below `folder`, by name: those holding a run's config.json, lock or metrics.jsonl, as
    TensorBoard takes every folder of event files below its logdir. A run's own folders are not searched (it holds
    no run), nor hidden ones; a sweep's runs are found, and its best/ is none (it holds the best run's generator
    alone)."""
    found = []
    for root, names, files in os.walk(folder, onerror=_unlisted):
        if {*RUN_MARKERS, METRICS_FILE} & set(files):
            found.append(Path(root))
            names.clear()
        else:
            names[:] = sorted(name for name in names if not name.startswith("."))
    return found


def _unlisted(error: OSError) -> None:
    if not isinstance(error, FileNotFoundError):  # a folder given that is not there holds no run: said once, later
        log.warning("cannot look for runs in %s (%s)", error.filename, reason(error))


def _write_plotly_beside(page: Path) -> None:
    """plotly.min.js beside `page`, where a comparison loads it from (also offline, from file://): rewritten only
    when it differs, as comparisons written at once (a sweep's pods) share it."""
    path = Path(page).parent / PLOTLY_NAME
    script = get_plotlyjs().encode("utf-8")
    with contextlib.suppress(OSError):
        if path.read_bytes() == script:
            return
    atomic_write_bytes(path, script)


def _write_page(path: Path, page: str) -> None:
    # A name from the file system (or a JSON escape) may hold a byte that is not UTF-8, as a lone surrogate: the page
    # shows it as its escape, \udcff.
    atomic_write_bytes(path, page.encode("utf-8", "backslashreplace"))


def comparable(runs: list[Run]) -> list[Run]:
    """The runs without a problem; a warning for each of the others. ConfigError, naming every problem, when there
    is none."""
    good = [run for run in runs if not run.problem]
    if not good:
        raise ConfigError("no run to compare: " + "; ".join(run.problem for run in runs))
    for run in runs:
        if run.problem:
            log.warning("leaving %s out of the comparison: %s", run.root, run.problem)
    return good


def render_run(run: Run, status: str, device: str | None = None) -> str:
    last = run.metrics[-1] if run.metrics else {}
    speed = last.get("steps_per_s")
    remaining = (run.steps or 0) - run.step
    eta = remaining / speed if status == RUNNING and speed and remaining > 0 else None
    charts = [_run_chart(run, keys, titles) for keys, titles in RUN_CHARTS.items() if run.series(keys[0])[0]]
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
        resumes=run.resumes,
        images=run.images,
        tiles=_tile_labels(run),
        tile_columns=grid_columns(SAMPLE_IMAGES),
        sample_every=run.config.get("sample_every"),
        config=_flat(run.config),
        timings=_timing_rows(run.timings) if run.timings else None,
        timings_steps=run.timings_steps,
        # The same judgement as the training log's: a class looks alike late in the run, which stopped improving.
        collapsed=collapsed(run.metrics, run.steps or run.step),
        wall_times=_has_wall_times(charts),
        refresh=REFRESH_SECONDS if status == RUNNING else None,
        plotly_src=None,  # embedded: the page is a file of its own, copied alone
        **_page_parts(),
    )


def render_comparison(runs: list[Run], plotly_src: str | None = None) -> str:
    """The comparison page; `plotly_src`: where it loads plotly.js from, relative to it (None: embedded)."""
    charts = [_comparison_chart(runs, key) for key in CURVES if any(run.series(key)[0] for run in runs)]
    configs = {run.root: _flat(run.config) for run in runs}  # by folder: two runs may share a name
    keys = sorted({key for config in configs.values() for key in config} - {"out"})
    differing = [key for key in keys if len({json.dumps(config.get(key)) for config in configs.values()}) > 1]
    # The ranking shows the differences that change a result, not where a run's files live.
    ranking_keys = [key for key in differing if key != "quality_cache"]
    return _template(
        "compare.html"
    ).render(
        runs=runs,
        count=plural(len(runs), "run"),
        ranking=ranked(runs),
        charts=charts,
        resumes=[],  # each run's own page marks its resumes
        images={path: run.images[path] for run in runs for path in _images(run)[-1:]},
        configs=configs,
        keys=differing + [key for key in keys if key not in differing],
        differing=set(differing),
        ranking_keys=ranking_keys,
        conditional=any("label_accuracy" in (run.quality or {}) for run in runs),
        wall_times=_has_wall_times(charts),
        refresh=None,
        plotly_src=plotly_src,
        **_page_parts(),
    )


def _run_chart(run: Run, keys: tuple[str, ...], titles: tuple[str, str] | None) -> dict:
    title, axis, _ = CURVES[keys[0]] if titles is None else (*titles, None)
    traces = [(CURVES[key][2], key, *run.series(key), run.times(key)) for key in keys]
    return _chart("+".join(keys), title, axis, traces)


def _comparison_chart(runs: list[Run], key: str) -> dict:
    title, axis, _ = CURVES[key]
    return _chart(key, title, axis, [(run.name, key, *run.series(key), run.times(key)) for run in runs])


def _chart(chart_id: str, title: str, axis: str, traces: list[tuple[str, str, list, list, list]]) -> dict:
    """A line chart over steps; each trace is (legend name, metrics.jsonl key, steps, values, wall times). The
    page draws it over steps or over wall time (`times`, a list per trace), smoothed as the reader asks."""
    colours = _chart_style()["layout"]["colorway"]
    drawn = [(index, trace) for index, trace in enumerate(traces) if trace[2]]
    data = [
        # A colour per trace position, so that a run keeps its colour in every chart (even where one has no data).
        {"type": "scatter", "mode": "lines+markers", "name": name, "meta": key, "x": steps, "y": values}
        | {"line": {"color": colours[index % len(colours)]}}
        for index, (name, key, steps, values, _) in drawn
    ]
    times = [trace[4] for _, trace in drawn]
    figure = {"data": data, "layout": _layout(title, axis, len(traces) > 1)}
    return {"id": f"chart-{chart_id}", "figure": figure, "times": times, "smooth": axis not in AS_MEASURED}


def _has_wall_times(charts: list[dict]) -> bool:
    return any(time is not None for chart in charts for times in chart.get("times", []) for time in times)


def _tile_labels(run: Run) -> list[str]:
    """A conditional run's class names in the order of its grids' tiles, row by row: its samples and reals.png
    cycle through the classes (job.networks.gan.sample_images, job.loop.setup.real_grid_images); [] for other runs."""
    if run.config.get("conditional") is not True:
        return []
    return [run.class_names[label] for label in cycling_labels(SAMPLE_IMAGES, len(run.class_names))]


def _timing_rows(timings: dict) -> list[tuple[str, str, str]]:
    """The timings line as (name, metrics.jsonl key, value with its unit), in its order."""
    rows = []
    for key, value in _flat(timings).items():
        if key == "overhead_ratio":
            name = "wall time, the quality classifier apart, over the time in the training calls"
            text = "–" if value is None else f"{value:.2f}×"
        elif key == "checkpoint_bytes" and _is_number(value):
            name, text = "checkpoints written", f"{value / 1e6:,.1f} MB"
        elif key.endswith("_s") and _is_number(value):
            part = key[: -len("_s")]
            apart = "quality classifier (trained once per data set, else loaded)"
            name = {"total": "in all", APART: apart}.get(part, part.replace("_", " "))
            text = f"{value:,.1f} seconds"
        else:
            name, text = key.replace("_", " ").replace(".", ": "), str(value)
        rows.append((name, key, text))
    return rows


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
            "text": f"{COVERED:.0%}: covered",
            "xref": "paper",
            "x": 1,
            "y": COVERED,
            "showarrow": False,
            "xanchor": "right",
            "yanchor": "bottom",
            "bgcolor": "rgba(255, 255, 255, 0.8)",  # readable where it crosses a bar
        }
    ]
    bars = {
        "type": "bar",
        "x": names,
        "y": shares,
        "meta": "class_shares",
    }
    return {"id": "chart-class_shares", "figure": {"data": [bars], "layout": layout}}


# How some y axes show their values: shares as percentages; learning rates (constant for many runs, where plotly would
# centre a range of ±1 on them) from 0, in powers of ten.
AS_MEASURED = ("classes", "learning rate")  # axes never smoothed: counts, and a schedule the job sets exactly
AXES = {
    "share": {"tickformat": ".1~%"},
    "learning rate": {"rangemode": "tozero", "exponentformat": "power"},
    "classes": {"dtick": 1},  # a count: whole ticks only
}


def _layout(title: str, axis: str, legend: bool) -> dict:
    # Plain plotly figure dicts, drawn (and checked) by plotly.js in the page: cheap enough to write the page at every
    # sample grid (docs/decisions/report-figure-data.md). The page adds the plotly_white style.
    return {
        "title": {"text": title, "x": 0.02, "font": {"size": 15}},
        "height": 300,
        "margin": {"l": 55, "r": 15, "t": 45, "b": 40},
        "xaxis": {"title": {"text": "step"}},
        "yaxis": {"title": {"text": axis}} | AXES.get(axis, {}),
        "showlegend": legend,
        "legend": {"orientation": "h", "y": -0.25},
    }


def _images(run: Run) -> list[Path]:
    return ([run.reals] if run.reals else []) + [path for _, path in run.samples]


def _flat(values: dict) -> dict:
    """Nested settings as one level: {"hyperparameters": {"beta_1": 0.5}} -> {"hyperparameters.beta_1": 0.5}."""
    flat, stack = {}, [("", iter(values.items()))]
    while stack:  # depth first, in order
        prefix, items = stack[-1]
        for key, value in items:
            if isinstance(value, dict):
                stack.append((f"{prefix}{key}.", iter(value.items())))
                break
            flat[f"{prefix}{key}"] = value
        else:
            stack.pop()
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
        loader=jinja2.PackageLoader("job.analysis", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    # `tojson` writes JSON for <script> blocks: <, >, & and ' as \u escapes (so "</script>" or "<!--<script>" in a
    # name can neither end the block nor change how the HTML parser reads it), every non-ASCII character too
    # (U+2028 and U+2029 included); NaN, which JSON.parse refuses, is an error rather than a dead page.
    environment.policies["json.dumps_kwargs"] = {"allow_nan": False}
    environment.filters["shown"] = _shown
    return environment


def _shown(value: object) -> str:
    """A setting as the page shows it: a list (class names, an image shape) as its items, comma-separated; other
    values as config.json writes them (null, true, false)."""
    if isinstance(value, list):
        return ", ".join(map(_shown, value))
    return value if isinstance(value, str) else json.dumps(value)


def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)
