"""The `auditor` command: parse options, call the library, turn the outcome into an exit code.

Exit codes: 0 done; 1 failed; 2 bad usage or input that cannot be audited at all;
3 done, and a flag at or above --fail-on was raised; 130 interrupted (resume by rerunning).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from auditor import __version__
from auditor import cli_options as options
from auditor.errors import AuditorError

log = logging.getLogger("auditor")


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="auditor: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Our errors become one clear line on stderr and their exit code, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AuditorError as exc:
            click.echo(f"auditor: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("auditor: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            # A bug of ours, not bad input: one clear line; the traceback on request.
            if os.environ.get("AUDITOR_DEBUG"):
                raise
            click.echo(
                f"auditor: internal error: {type(exc).__name__}: {exc}. This is a bug in "
                "auditor; rerun with AUDITOR_DEBUG=1 for the traceback and report it.",
                err=True,
            )
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="auditor")
def main() -> None:
    """Audit image classifiers and their data sets for shortcut learning."""


@main.command()
@click.argument("data")
@options.model
@options.audit_out
@options.weights
@options.num_classes
@options.data_options
@options.layer_options
@options.pass_methods
@options.primary
@options.explain_class
@options.label_threshold
@options.normalisation_options
@options.foreground
@options.batch_size
@options.device
@options.amp
@options.compile_model
@options.chunk_size
@options.trust_pickle
@options.overwrite
@options.fail_on
@options.baseline
@options.gallery_size
@options.suspect_methods
@options.separate_method_options
@options.no_interventions
@options.sanity
@_handle_errors
def audit(data: str, out: str, no_interventions: bool, **opts: Any) -> None:
    """Audit a model on DATA: a class-per-folder tree, a CSV manifest, Parquet, a saved
    Hugging Face data set or WebDataset .tar shards (a shard, a folder, a {000..009} pattern)."""
    from auditor.audit import run_audit
    from auditor.config import AuditConfig

    _setup_logging(opts["quiet"])
    config = AuditConfig(data=data, out=out, interventions=not no_interventions, **opts)
    result = run_audit(config, command=_command_line())
    if result.summary:  # empty on the non-zero ranks of a torchrun job: rank 0 reports
        _print_outcome(result.summary, result.report_path)
    sys.exit(result.exit_code(config.fail_on))


@main.command()
@click.argument("data")
@options.probe_out
@options.data_options
@options.fail_on
@_handle_errors
def probe(data: str, out: str, **opts: Any) -> None:
    """Model-free checks of DATA: do file properties or border pixels predict the label?"""
    from auditor.config import DEFAULT_IMAGE_SIZE
    from auditor.probe import run_probe

    _setup_logging(opts["quiet"])
    result = run_probe(
        data,
        out,
        classes=opts["classes"],
        masks=opts["masks"],
        image_size=opts["image_size"] or DEFAULT_IMAGE_SIZE,
        border=opts["border"],
        workers=opts["workers"],
        allow_outside=opts["allow_outside"],
        image_column=opts["image_column"],
        label_column=opts["label_column"],
        quiet=opts["quiet"],
        command=_command_line(),
        dicom_window=opts["dicom_window"],
        multi_label=opts["multi_label"],
    )
    _print_outcome(result.summary, result.report_path)
    sys.exit(result.exit_code(opts["fail_on"]))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@options.report_output
@options.report_format
@options.report_gallery_size
@_handle_errors
def report(run_dir: str, output: str | None, fmt: str, gallery_size: int) -> None:
    """(Re)render the report of RUN_DIR, without the model."""
    from auditor.report import render_report, summary_json, write_samples_csv
    from auditor.store import RunReader

    if fmt == "json":
        click.echo(summary_json(run_dir))
        return
    reader = RunReader(run_dir)  # the table, read once for both
    path = render_report(run_dir, output=output, gallery_size=gallery_size, reader=reader)
    write_samples_csv(run_dir, reader=reader)
    click.echo(str(path))


@main.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@options.compare_out
@options.fail_on
@_handle_errors
def compare(run_a: str, run_b: str, out: str, fail_on: str | None) -> None:
    """What changed from RUN_A (before) to RUN_B (after): flags, per-class measures, samples.

    --fail-on counts the flags that appeared in RUN_B."""
    from auditor.compare import compare_runs
    from auditor.report.compare_page import write_comparison

    comparison = compare_runs(run_a, run_b)
    json_path, html_path = write_comparison(comparison, out)
    click.echo(f"{comparison.overlap.describe()}")
    for name, items in (("appeared", comparison.flags["appeared"]),
                        ("disappeared", comparison.flags["disappeared"])):
        for flag in items:
            where = f" [{flag['class']}]" if flag.get("class") is not None else ""
            click.echo(f"  {name:11} {str(flag.get('severity', '')).upper():6} "
                       f"{flag.get('kind')}{where}: {flag.get('message', '')}")
    click.echo(f"  {len(comparison.flags['persisting'])} flags persist")
    click.echo(f"compare: {html_path} ({json_path.name})")
    sys.exit(comparison.exit_code(fail_on))


@main.command()
@options.demo_out
@options.per_class
@options.epochs
@options.quiet
@_handle_errors
def demo(out: str, per_class: int, epochs: int, quiet: bool) -> None:
    """Generate a Pokemon/Digimon-style shortcut data set, train a small CNN, audit it."""
    from auditor.demo import run_demo

    _setup_logging(quiet)
    result = run_demo(out, per_class=per_class, epochs=epochs, quiet=quiet)
    _print_outcome(result.summary, result.report_path)


def _command_line() -> str:
    return shlex.join(["auditor", *sys.argv[1:]])


def _print_outcome(summary: dict[str, Any], report_path: Any) -> None:
    flags = summary.get("flags", [])
    accuracy = summary.get("accuracy") or {}
    acc, auroc = accuracy.get("overall"), accuracy.get("macro_auroc")
    data = summary.get("data") or {}
    line = f"{data.get('n_ok', 0)} of {data.get('n_samples', 0)} images audited"
    if acc is not None:
        line += f", accuracy {acc:.1%}"
    if auroc is not None:
        line += f", mean AUROC over labels {auroc:.3f}"
    click.echo(line)
    _print_findings(flags)
    baseline = summary.get("baseline")
    if isinstance(baseline, dict):
        click.echo(f"  against the baseline {baseline.get('run')}: "
                   f"{len(baseline.get('appeared') or [])} new, "
                   f"{len(baseline.get('disappeared') or [])} gone, "
                   f"{baseline.get('n_persisting', 0)} known")
    click.echo(f"report: {report_path}")


#: Findings printed in full on the terminal; the report lists every one.
PRINTED_FINDINGS = 10


def _print_findings(flags: list[dict[str, Any]]) -> None:
    """The flags grouped into findings as the report groups them, strongest first: each
    finding's lead flag with its message, then the kinds of the flags that share its cause."""
    from auditor.report.sections.findings import group_findings

    if not flags:
        click.echo("  no shortcut flags raised")
        return
    findings = group_findings(flags)
    click.echo(f"{len(findings)} finding{'s' if len(findings) != 1 else ''} "
               f"from {len(flags)} flag{'s' if len(flags) != 1 else ''}:")
    for finding in findings[:PRINTED_FINDINGS]:
        lead = finding.lead
        where = f" [{lead['class']}]" if lead.get("class") else ""
        click.echo(f"  {lead['severity'].upper():6} {lead['kind']}{where}: {lead['message']}")
        others = [f"{f['kind']} ({f['severity']})" for f in finding.flags[1:]]
        if others:
            click.echo(f"         with {', '.join(others)}")
    if len(findings) > PRINTED_FINDINGS:
        click.echo(f"  ... and {len(findings) - PRINTED_FINDINGS} more findings in the report")


def _load_for_maps(opts: dict[str, Any]) -> Any:
    """The model of --model/--weights/--num-classes/--trust-pickle, on --device, in eval mode
    (a model on random initial weights is said in the log).
    --image-size, --mean, --std, --classes and --reshape not given are filled in ``opts`` from
    what the model declares (as `audit` does)."""
    from auditor.config import AuditConfig
    from auditor.models.defaults import model_defaults
    from auditor.models.initial import random_weights_note, runs_on_random_weights
    from auditor.models.loading import load_model
    from auditor.runtime import select_device

    defaults = model_defaults(opts["model"], opts["weights"])
    given = AuditConfig(data="", model=opts["model"], out="", image_size=opts["image_size"],
                        mean=opts["mean"], std=opts["std"], classes=opts.get("classes"),
                        reshape=opts["reshape"])
    filled = given.resolved(defaults.image_size, defaults.mean, defaults.std, defaults.classes,
                            defaults.reshape)
    for name in ("image_size", "mean", "std", "classes", "reshape"):
        opts[name] = getattr(filled, name)
    device = select_device(opts["device"])
    loaded = load_model(
        opts["model"], opts["weights"], opts["num_classes"], opts["trust_pickle"]
    )
    if runs_on_random_weights(loaded, opts["num_classes"]):
        log.warning("%s", random_weights_note(opts["model"]))
    return loaded.module.to(device)


def _layers(target_layers: tuple[str, ...]) -> str | list[str] | None:
    return (
        None
        if not target_layers
        else (target_layers[0] if len(target_layers) == 1 else list(target_layers))
    )


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@options.explain_out
@options.explain_methods
@options.explain_target
@options.explain_classes
@options.map_model_options
@_handle_errors
def explain(
    images: tuple[str, ...], out: str, methods: tuple[str, ...], target: str | None, **opts: Any
) -> None:
    """Explain IMAGE files with several map methods side by side (exit 1 if any unreadable)."""
    from auditor.cams import reshape_from_spec
    from auditor.explain import explain_images, write_explanations

    _setup_logging(opts["quiet"])
    model = _load_for_maps(opts)
    results = explain_images(
        list(images),
        model,
        methods,
        target=target,
        classes=opts["classes"],
        target_layer=_layers(opts["target_layers"]),
        reshape=reshape_from_spec(opts["reshape"], model, opts["image_size"]),
        image_size=opts["image_size"],
        mean=opts["mean"],
        std=opts["std"],
        batch_size=opts["batch_size"],
        occlusion_patch=opts["occlusion_patch"],
        scorecam_channels=opts["scorecam_channels"],
    )
    written = write_explanations(results, out)
    failed = [r for r in results if not r.ok]
    for record in failed:
        click.echo(f"auditor: cannot explain {record.path}: {record.error}", err=True)
    click.echo(f"{len(written)} of {len(results)} images explained; files in {out}")
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("data")
@options.sanity_out
@options.sanity_methods
@options.sanity_samples
@options.sanity_steps
@options.sanity_threshold
@options.sanity_seed
@options.data_classes
@options.allow_outside
@options.map_model_options
@_handle_errors
def sanity(
    data: str,
    out: str | None,
    methods: tuple[str, ...],
    n_samples: int,
    steps: int,
    threshold: float,
    seed: int,
    allow_outside: bool,
    **opts: Any,
) -> None:
    """Model-randomisation sanity check of the map methods on images of DATA."""
    from auditor.cams import reshape_from_spec
    from auditor.data import AuditDataset, open_source
    from auditor.sanity import format_sanity_table, sanity_from_dataset, write_sanity

    _setup_logging(opts["quiet"])
    model = _load_for_maps(opts)
    index = open_source(data, classes=opts["classes"], allow_outside=allow_outside)
    dataset = AuditDataset(index, opts["image_size"])
    result = sanity_from_dataset(
        model,
        dataset,
        methods,
        _layers(opts["target_layers"]),
        opts["mean"],
        opts["std"],
        n_samples=n_samples,
        seed=seed,
        steps=steps or None,
        threshold=threshold,
        batch_size=opts["batch_size"],
        occlusion_patch=opts["occlusion_patch"],
        scorecam_channels=opts["scorecam_channels"],
        reshape=reshape_from_spec(opts["reshape"], model, opts["image_size"]),
    )
    click.echo(format_sanity_table(result))
    if out:
        click.echo(f"written: {write_sanity(result, out)}")
