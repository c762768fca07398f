"""Multi-site learning on the real NVIDIA FLARE simulator with two phantom sites: cyclic weight transfer
(with a site failing mid-round, the last good global model kept, and the run resumed) and federated
averaging (the global model is the sample-weighted mean of the sites' models); only weights and the
sample count leave a site; the exported job ships no code; the per-site evaluation table."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("nvflare")

from segtransfer.cli import main  # noqa: E402
from segtransfer.errors import InputError  # noqa: E402
from segtransfer.hemorrhage import default_model_path  # noqa: E402
from segtransfer.hemorrhage.network import description as hemorrhage_description  # noqa: E402
from segtransfer.models import build_network, load_package  # noqa: E402
from segtransfer.multisite import evaluation  # noqa: E402
from segtransfer.multisite.flare_job import ALLOWED_CLASSES, JobSpec, RunIncomplete, simulate  # noqa: E402
from segtransfer.multisite.phantom_sites import write_sites  # noqa: E402
from segtransfer.multisite.task import get_task_kind, open_site_task  # noqa: E402
from segtransfer.multisite.weights import initial_weights  # noqa: E402

#: Small and fast: 32-pixel patches, 6 + 6 per scan.
OPTIONS = {"patch_size": 32, "positives": 6, "negatives": 6, "batch_size": 4, "lr": 1e-3}
QUIET = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    return write_sites(root, ["site_a", "site_b"], ["site_c"], train=2, test=2, spacing=(3.0, 3.0, 8.0), progress=QUIET)


def weights_of(path):
    return {k: v.numpy() for k, v in load_package(path).state_dict.items()}


def assert_only_weights_left(site_out, rounds):
    """The audit of what left the site: one record per round, the network's full state dict (names and
    shapes) as arrays, nothing else in the payload, and as metadata only the two numbers the server
    needs: the sample count (FedAvg's weight) and the validation loss (the convergence rule)."""
    expected = build_network(hemorrhage_description()).state_dict()
    status = json.loads((site_out / "status.json").read_text(encoding="utf-8"))
    records = [json.loads(line) for line in (site_out / "outgoing.jsonl").read_text(encoding="utf-8").splitlines()]
    failed = [r for r in records if r["return_code"] != "OK"]
    for record in failed:  # a failed round sends its error code and nothing else
        assert record["data_kind"] is None and record["arrays"] == {} and record["meta"] == {} and record["bytes"] == 0
    records = [r for r in records if r["return_code"] == "OK"]
    assert len(records) == rounds
    for record, done in zip(records, status["rounds"]):
        assert record["data_kind"] == "WEIGHTS"
        assert set(record["arrays"]) == set(expected)
        for key, info in record["arrays"].items():
            assert info["shape"] == list(expected[key].shape) and info["dtype"] == str(expected[key].numpy().dtype), key
        assert record["non_array_data"] == []
        assert record["meta"] == {"NUM_STEPS_CURRENT_ROUND": done["n_samples"], "initial_metrics": {"val_loss": done["metrics"]["val_loss"]}}
        assert record["bytes"] == sum(v.numel() * v.element_size() for v in expected.values())  # about 0.8 MB: weights only


def site_reports(out, site):
    """Per round: (sample count, validation loss) the site recorded (and sent)."""
    status = json.loads((out / "sites" / site / "status.json").read_text(encoding="utf-8"))
    return [(r["n_samples"], r["metrics"]["val_loss"]) for r in status["rounds"]]


def assert_rule_record(out, summary, names):
    """The server's record of the rule: per round the sample-weighted mean of the losses the sites sent;
    the best round is the lowest; the kept global model is that round's (the last model otherwise)."""
    reports = {s: site_reports(out, s) for s in names}
    expected = [sum(n * v for n, v in (reports[s][r] for s in names)) / sum(reports[s][r][0] for s in names)
                for r in range(summary["completed_rounds"])]
    np.testing.assert_allclose(summary["val_loss_history"], expected, rtol=1e-9)
    assert summary["best_round"] == int(np.argmin(expected)) and summary["best_val_loss"] == pytest.approx(min(expected))
    best = load_package(out / "global_model")
    assert best.sha256 == summary["global_model"]["sha256"] and best.card["validation"]["round"] == summary["best_round"]
    same = all(np.array_equal(v, weights_of(out / "last_model")[k]) for k, v in weights_of(out / "global_model").items())
    assert same == (summary["best_round"] == summary["completed_rounds"] - 1)


def test_fedavg_global_model_is_the_sample_weighted_mean_of_the_sites(sites, tmp_path):
    """Two rounds with min_delta 0: the rule can never hold, so the run stops at its maximum."""
    out = tmp_path / "fedavg"
    summary = simulate(JobSpec("fedavg", rounds=2, options=OPTIONS, patience=1, min_delta=0.0),
                       {"site_a": sites["site_a"], "site_b": sites["site_b"]}, out, progress=QUIET)
    assert summary["complete"] and summary["completed_rounds"] == 2 and summary["failures"] == []
    assert summary["stop_reason"] == "max_rounds"
    assert_rule_record(out, summary, ["site_a", "site_b"])
    glob = weights_of(out / "last_model")  # the global model of the last round, from the sites' last local models
    locals_ = {s: weights_of(out / "sites" / s / "local_model") for s in ("site_a", "site_b")}
    counts = {s: site_reports(out, s)[-1][0] for s in ("site_a", "site_b")}
    assert all(n > 0 for n in counts.values())
    start = initial_weights(hemorrhage_description(), 0)
    total = sum(counts.values())
    for key, value in glob.items():
        if value.dtype.kind == "f":
            mean = sum(counts[s] * locals_[s][key] for s in counts) / total
            np.testing.assert_allclose(value, mean, atol=1e-6, err_msg=key)
    # the sites trained: their models moved away from the initial global model, and apart from each other
    key = "model.0.conv.unit0.conv.weight"
    assert not np.allclose(locals_["site_a"][key], start[key]) and not np.allclose(locals_["site_a"][key], locals_["site_b"][key])
    for s in ("site_a", "site_b"):
        assert_only_weights_left(out / "sites" / s, rounds=2)


def test_cyclic_stops_on_the_convergence_rule_before_the_maximum(sites, tmp_path):
    """Patience 1 and min_delta 1 (a Dice loss cannot improve by 1): the rule holds as soon as it can be
    evaluated, after round 2 of at most 4; the best of the two rounds' models is kept."""
    out = tmp_path / "cyclic"
    assert main(["multisite", "simulate", "--workflow", "cyclic", "--site", f"site_a={sites['site_a']}", "--site", f"site_b={sites['site_b']}",
                 "--rounds", "4", "--patience", "1", "--min-delta", "1", "--out", str(out),
                 *[a for k, v in OPTIONS.items() for a in ("--option", f"{k}={v}")]]) == 0
    summary = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert summary["complete"] and summary["stop_reason"] == "converged" and summary["completed_rounds"] == 2
    assert summary["rounds_requested"] == 4 and all(len(site_reports(out, s)) == 2 for s in ("site_a", "site_b"))
    assert_rule_record(out, summary, ["site_a", "site_b"])
    for s in ("site_a", "site_b"):
        assert_only_weights_left(out / "sites" / s, rounds=2)


def test_cyclic_site_failing_mid_round_keeps_last_good_model_and_resumes(sites, tmp_path):
    # site_b gets a broken case: its mask is on another grid, so its training fails in round 1
    broken_b = tmp_path / "site_b"
    shutil.copytree(sites["site_b"], broken_b)
    bad = broken_b / "train" / "zz_broken"
    bad.mkdir()
    good_case = sorted((broken_b / "train").iterdir())[0]
    shutil.copy(good_case / "image.nii.gz", bad / "image.nii.gz")
    mask = sitk.ReadImage(str(good_case / "mask.nii.gz"))
    sitk.WriteImage(mask[:, :, : mask.GetSize()[2] - 1], str(bad / "mask.nii.gz"))
    out = tmp_path / "cyclic"
    site_folders = {"site_a": sites["site_a"], "site_b": broken_b}
    with pytest.raises(RunIncomplete, match=r"0 of 1 rounds completed \(site site_b failed in round 1: .*zz_broken.*--resume"):
        simulate(JobSpec("cyclic", rounds=1, options=OPTIONS), site_folders, out, progress=QUIET)
    summary = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert [f["site"] for f in summary["failures"]] == ["site_b"] and not summary["complete"]
    kept = weights_of(out / "last_model")  # the last good global model: what site_a sent, or the initial one
    a_status = json.loads((out / "sites" / "site_a" / "status.json").read_text(encoding="utf-8"))
    reference = weights_of(out / "sites" / "site_a" / "local_model") if a_status["rounds"] else initial_weights(hemorrhage_description(), 0)
    for key in kept:
        np.testing.assert_array_equal(kept[key].reshape(reference[key].shape), reference[key], err_msg=key)
    kept_sha = load_package(out / "last_model").sha256

    shutil.rmtree(bad)  # the site fixes its data and the run resumes from the kept model
    summary = simulate(JobSpec("cyclic", rounds=1, options=OPTIONS), site_folders, out, resume=True, progress=QUIET)
    assert summary["complete"] and summary["completed_rounds"] == 1 and len(summary["attempts"]) == 2
    assert summary["failures"] == [] and load_package(out / "global_model").sha256 != kept_sha
    # cyclic: the global model is the model of the last site visited, unchanged
    glob = weights_of(out / "global_model")
    last = [s for s in ("site_a", "site_b") if all(np.array_equal(glob[k], v) for k, v in weights_of(out / "sites" / s / "local_model").items())]
    assert len(last) == 1
    assert_only_weights_left(out / "sites" / "site_b", rounds=1)  # the failed attempt sent only its error code
    with pytest.raises(InputError, match="already complete"):
        simulate(JobSpec("cyclic", rounds=1, options=OPTIONS), site_folders, out, resume=True, progress=QUIET)


def test_simulator_that_does_not_start_is_started_once_more(sites, tmp_path, monkeypatch):
    """A FLARE simulator that fails before any site trains (no site error, no round: e.g. a local port
    taken between FLARE's choice and its use) is started once more, in the same attempt; the run then
    completes.  A second such failure is reported, with the resume hint."""
    from segtransfer.multisite import flare_job

    real_recipe, starts = flare_job._recipe, []

    class NoStart:
        """A recipe whose simulator fails at once, as FLARE reports it."""

        def __init__(self, message):
            self.message = message

        def execute(self, env):
            raise RuntimeError(self.message)

    def failing_first(job):
        starts.append(job.name)
        return NoStart("OSError: [Errno 98] Address already in use") if len(starts) == 1 else real_recipe(job)

    monkeypatch.setattr(flare_job, "_recipe", failing_first)
    messages = []
    summary = simulate(JobSpec("fedavg", rounds=1, options=OPTIONS), {"site_a": sites["site_a"], "site_b": sites["site_b"]},
                       tmp_path / "run", progress=lambda f, m: messages.append(m))
    assert summary["complete"] and summary["completed_rounds"] == 1 and len(summary["attempts"]) == 1
    assert "Address already in use" in summary["attempts"][0]["restarted_after"]
    assert starts[1] == starts[0] + "-restart" and summary["attempts"][0]["flare_workspace"].endswith("-restart")
    assert any("starting it once more" in m for m in messages)

    monkeypatch.setattr(flare_job, "_recipe", lambda job: NoStart("no start"))
    with pytest.raises(RunIncomplete, match=r"0 of 1 rounds completed \(no start\).*--resume"):
        simulate(JobSpec("fedavg", rounds=1, options=OPTIONS), {"site_a": sites["site_a"], "site_b": sites["site_b"]}, tmp_path / "dead", progress=QUIET)


def test_exported_job_ships_no_code_and_names_only_installed_components(tmp_path):
    out = tmp_path / "job"
    assert main(["multisite", "export-job", "--workflow", "cyclic", "--sites", "3", "--rounds", "4", "--out", str(out), "--option", "lr=1e-4"]) == 0
    job = out / "segtransfer-hemorrhage-cyclic"
    files = sorted(p.relative_to(job).as_posix() for p in job.rglob("*") if p.is_file())
    assert files == ["app/config/config_fed_client.json", "app/config/config_fed_server.json", "meta.json"]
    client = json.loads((job / "app/config/config_fed_client.json").read_text(encoding="utf-8"))
    server = json.loads((job / "app/config/config_fed_server.json").read_text(encoding="utf-8"))
    paths = [client["executors"][0]["executor"]["path"]] + [f["path"] for g in client["task_result_filters"] for f in g["filters"]]
    paths += [c["path"] for c in server["components"]] + [w["path"] for w in server["workflows"]]
    assert all(p in ALLOWED_CLASSES or p.startswith("nvflare.") for p in paths), paths
    assert client["executors"][0]["executor"]["args"] == {"options": {"lr": 0.0001}}  # no site folder: each site sets its own
    allowed = json.loads((out / "site_resources.json").read_text(encoding="utf-8"))["class_allow_list"]
    assert set(ALLOWED_CLASSES) <= set(allowed)
    # the cross-site evaluation job: configuration only, the model pinned by its package ID, sites read their own folder
    out = tmp_path / "eval_job"
    assert main(["multisite", "export-eval-job", "--sites", "3", "--single", f"shipped={default_model_path()}", "--out", str(out)]) == 0
    job = out / "segtransfer-hemorrhage-cross-site-eval"
    files = sorted(p.relative_to(job).as_posix() for p in job.rglob("*") if p.is_file())
    assert files == ["app/config/config_fed_client.json", "app/config/config_fed_server.json", "meta.json"]
    client = json.loads((job / "app/config/config_fed_client.json").read_text(encoding="utf-8"))
    server = json.loads((job / "app/config/config_fed_server.json").read_text(encoding="utf-8"))
    assert client["executors"][0]["executor"]["path"] == "segtransfer.multisite.flare_eval.SiteEvaluator"
    assert client["executors"][0]["executor"].get("args", {}) == {}
    [locator] = [c for c in server["components"] if c["path"].endswith("PackageLocator")]
    assert locator["args"]["models"]["shipped"]["sha256"] == load_package(default_model_path()).sha256
    paths = [client["executors"][0]["executor"]["path"]] + [c["path"] for c in server["components"]] + [w["path"] for w in server["workflows"]]
    allowed = json.loads((out / "site_resources.json").read_text(encoding="utf-8"))["class_allow_list"]
    assert all(p in allowed for p in paths), paths


def test_bad_inputs_get_one_line_errors(sites, tmp_path, capsys):
    cases = [
        (["multisite", "simulate", "--workflow", "cyclic", "--site", f"site_a={sites['site_a']}", "--out", str(tmp_path / "o1")], "at least 2 sites"),
        (["multisite", "simulate", "--workflow", "fedavg", "--site", "site_a", "--site", "b=x", "--out", str(tmp_path / "o2")], "expected NAME=VALUE"),
        (["multisite", "simulate", "--workflow", "fedavg", "--site", f"a={sites['site_a']}", "--site", f"b={tmp_path / 'none'}",
          "--out", str(tmp_path / "o3")], "data folder of site b not found"),
        (["multisite", "simulate", "--workflow", "fedavg", "--site", f"a={sites['site_a']}", "--site", f"b={sites['site_b']}",
          "--option", "learning_rate=1", "--out", str(tmp_path / "o4")], "unknown option"),
        (["multisite", "simulate", "--workflow", "fedavg", "--site", f"a b={sites['site_a']}", "--site", f"b={sites['site_b']}",
          "--out", str(tmp_path / "o5")], "site name"),
        (["multisite", "simulate", "--workflow", "fedavg", "--site", f"a={sites['site_a']}", "--site", f"b={sites['site_b']}",
          "--out", str(sites["site_a"])], "not empty"),
        (["multisite", "evaluate", "--site", f"a={sites['site_a']}", "--held-out", "zz", "--single", f"m={default_model_path()}",
          "--out", str(tmp_path / "o6")], "zz not among the sites"),
        (["multisite", "evaluate", "--site", f"a={sites['site_a']}", "--run", f"r={tmp_path}", "--out", str(tmp_path / "o7")], "not a 'multisite simulate' run"),
        (["multisite", "evaluate", "--merge", str(sites["site_a"] / "test" / "site_a_test_00" / "truth.json"), "--out", str(tmp_path / "o8")],
         "truth.json: not a site metrics file"),
        (["multisite", "evaluate", "--single", f"m={default_model_path()}", "--out", str(tmp_path / "o9")], "give the sites"),
        (["multisite", "simulate", "--workflow", "cyclic", "--site", f"a={sites['site_a']}", "--site", f"b={sites['site_b']}",
          "--patience", "0", "--out", str(tmp_path / "o10")], "patience must be >= 1"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 11))
    with pytest.raises(InputError, match="site data folder not found"):
        open_site_task("hemorrhage", tmp_path / "missing")
    with pytest.raises(InputError, match="unknown task kind"):
        get_task_kind("retina")


def _blank_package(path):
    """A model that never predicts hemorrhage: zero weights, strongly negative output bias."""
    from segtransfer.models import ModelPackage, save_package

    network = build_network(hemorrhage_description())
    state = {k: (v * 0 if v.dtype.is_floating_point else v) for k, v in network.state_dict().items()}
    last_bias = [k for k in state if k.endswith("bias")][-1]
    state[last_bias] = state[last_bias] - 20.0
    network.load_state_dict(state)
    card = {"provenance": {"site": "test"}, "intended_use": "test: predicts nothing"}
    return save_package(ModelPackage.from_network(network, hemorrhage_description(), card), path)


def test_evaluation_command_on_known_data(sites, tmp_path):
    """Every model on every site (held-out included); a model that predicts nothing scores Dice 0 and
    volume 0 on every scan; manual volumes are the masks' voxel volumes; the held-out mean and the
    Wilcoxon test follow from the per-scan rows."""
    _blank_package(tmp_path / "blank")
    out = tmp_path / "table"
    argv = ["multisite", "evaluate", "--site", f"site_a={sites['site_a']}", "--site", f"site_c={sites['site_c']}", "--held-out", "site_c",
            "--single", f"shipped={default_model_path()}", "--multi", f"blank={tmp_path / 'blank'}", "--out", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json", "per_scan.csv", "per_site.csv", "table.md", "wilcoxon.csv"]
    ev = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    rows = ev["per_scan"]
    assert len(rows) == 2 * 2 * 2  # models x sites x test scans
    for r in rows:
        case = sites[r["site"]] / "test" / r["case"]
        mask = sitk.ReadImage(str(case / "mask.nii.gz"))
        voxels = int(sitk.GetArrayViewFromImage(mask).sum())
        assert r["manual_ml"] == pytest.approx(voxels * np.prod(mask.GetSpacing()) / 1000.0)
        truth = json.loads((case / "truth.json").read_text(encoding="utf-8"))["total_volume_ml"]
        assert r["manual_ml"] == pytest.approx(truth, rel=0.35)  # the phantom's analytic volume, at 3 x 3 x 8 mm voxels
        if r["model"] == "blank":
            assert r["dice"] == 0.0 and r["predicted_ml"] == 0.0
    shipped = [r for r in rows if r["model"] == "shipped"]
    assert np.mean([r["dice"] for r in shipped]) > 0.2  # the shipped model finds hemorrhage even at this coarse spacing
    site_c = [r["dice"] for r in shipped if r["site"] == "site_c"]
    assert ev["held_out_mean"]["shipped"]["dice_mean"] == pytest.approx(np.mean(site_c))
    assert ev["held_out_mean"]["blank"]["dice_mean"] == 0.0
    [w] = ev["wilcoxon"]
    assert (w["multi_site"], w["single_site"], w["scans"]) == ("blank", "shipped", 2)
    assert w["median_dice_difference"] == pytest.approx(-np.median(site_c))
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "site_c (held out) Dice" in table and "| blank | multi-site | 0.000 ± 0.000" in table
    assert main(argv) == 2  # the output folder is not overwritten


def test_table_statistics_on_known_numbers():
    """Per-site means, Pearson r of volumes and the exact Wilcoxon p on hand-made per-scan results."""
    models = [evaluation.ModelEntry("msl", default_model_path(), "multi-site"), evaluation.ModelEntry("ssl", default_model_path(), "single-site")]
    ev = evaluation.Evaluation(["a", "h1", "h2"], ["h1", "h2"], models)
    for n, site in enumerate(ev.sites):
        for i in range(3):
            manual = 2.0 + 3.0 * i
            ev.per_scan.append({"model": "msl", "site": site, "case": f"c{i}", "dice": 0.8, "predicted_ml": 1.5 * manual + 1.0, "manual_ml": manual})
            ev.per_scan.append({"model": "ssl", "site": site, "case": f"c{i}", "dice": 0.5 + 0.05 * i + 0.01 * n, "predicted_ml": 0.0 if i == 0 else manual,
                                "manual_ml": manual})
    evaluation.summarise(ev)
    msl_a = ev.site_row("msl", "a")
    assert msl_a["dice_mean"] == pytest.approx(0.8) and msl_a["dice_sd"] == pytest.approx(0.0) and msl_a["pearson_r"] == pytest.approx(1.0)
    ssl_h1 = ev.site_row("ssl", "h1")
    assert ssl_h1["dice_mean"] == pytest.approx(0.56) and ssl_h1["dice_sd"] == pytest.approx(0.05)
    assert ssl_h1["pearson_r"] == pytest.approx(np.corrcoef([0.0, 5.0, 8.0], [2.0, 5.0, 8.0])[0, 1])
    assert ev.held_out_mean["ssl"]["dice_mean"] == pytest.approx(0.565)
    [w] = ev.wilcoxon
    assert w["scans"] == 6 and w["median_dice_difference"] == pytest.approx(0.235)
    assert w["p"] == pytest.approx(2 / 2**6)  # exact two-sided p: all 6 differences positive
    table = evaluation.markdown_table(ev)
    assert "| msl | multi-site | **0.800 ± 0.000** | 1.00 |" in table and "0.0312" in table
    assert not math.isnan(ev.held_out_mean["msl"]["pearson_r"])


def test_convergence_rule_on_known_losses():
    """The rule of single-site training on the sample-weighted round losses: weights 3:1, best round the
    lowest, stop once the best has improved by less than min_delta over patience rounds, or at the maximum."""
    from segtransfer.multisite.convergence import ConvergenceRule, weighted_val_loss

    assert weighted_val_loss({"a": {"val_loss": 0.2, "n_samples": 30}, "b": {"val_loss": 0.6, "n_samples": 10}}) == pytest.approx(0.3)
    rule = ConvergenceRule(patience=2, min_delta=0.01, max_rounds=10)
    for r, loss in enumerate([0.9, 0.5, 0.495, 0.6]):
        best = rule.add_round(r, {"a": {"val_loss": loss, "n_samples": 5}})
        assert best == (r in (0, 1, 2))
        assert rule.stop_reason() == (None if r < 3 else "converged")  # 0.5 -> 0.495 over rounds 3-4: less than 0.01
    assert rule.state()["best_round"] == 2 and rule.state()["best_val_loss"] == pytest.approx(0.495)
    capped = ConvergenceRule(patience=5, min_delta=0.0, max_rounds=2)
    capped.add_round(0, {"a": {"val_loss": 0.9, "n_samples": 1}})
    assert capped.stop_reason() is None
    capped.add_round(1, {"a": {"val_loss": 0.8, "n_samples": 1}})
    assert capped.stop_reason() == "max_rounds"
    with pytest.raises(InputError, match="no samples"):
        weighted_val_loss({"a": {"val_loss": 0.5, "n_samples": 0}})


def test_cross_site_evaluation_on_flare_and_merged_site_files_give_the_local_table(sites, tmp_path):
    """The same table three ways on the same models and sites: every test folder read here; FLARE's
    cross-site model evaluation (each simulated site evaluates on its own folder); and per-site metrics
    files merged.  What each site returned in FLARE is per-scan numbers only: no arrays, no case names."""
    _blank_package(tmp_path / "blank")
    site_args = [a for s in ("site_a", "site_b", "site_c") for a in ("--site", f"{s}={sites[s]}")]
    model_args = ["--single", f"shipped={default_model_path()}", "--multi", f"blank={tmp_path / 'blank'}"]
    assert main(["multisite", "evaluate", *site_args, "--held-out", "site_c", *model_args, "--out", str(tmp_path / "local")]) == 0
    assert main(["multisite", "evaluate", *site_args, "--held-out", "site_c", *model_args, "--flare", str(tmp_path / "run"),
                 "--out", str(tmp_path / "flare")]) == 0
    for s in ("site_a", "site_b", "site_c"):
        assert main(["multisite", "evaluate-site", "--site", f"{s}={sites[s]}", *model_args, "--out", str(tmp_path / f"{s}.json")]) == 0
    assert main(["multisite", "evaluate", *[a for s in ("site_a", "site_b", "site_c") for a in ("--merge", str(tmp_path / f"{s}.json"))],
                 "--held-out", "site_c", "--out", str(tmp_path / "merged")]) == 0
    local = json.loads((tmp_path / "local" / "evaluation.json").read_text(encoding="utf-8"))
    assert {r["model"] for r in local["per_scan"]} == {"shipped", "blank"} and len(local["per_scan"]) == 2 * 3 * 2
    for other in ("flare", "merged"):
        ev = json.loads((tmp_path / other / "evaluation.json").read_text(encoding="utf-8"))
        assert ev["per_site"] == local["per_site"] and ev["held_out_mean"] == local["held_out_mean"] and ev["wilcoxon"] == local["wilcoxon"], other
        assert (tmp_path / other / "table.md").read_text(encoding="utf-8") == (tmp_path / "local" / "table.md").read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "run" / "cross_site").iterdir()) == ["site_a.json", "site_b.json", "site_c.json"]
    for s in ("site_a", "site_b", "site_c"):
        records = [json.loads(line) for line in (tmp_path / "run" / "sites" / s / "outgoing.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(records) == 2  # one result per model
        for record in records:
            assert record["return_code"] == "OK" and record["data_kind"] == "METRICS"
            assert record["arrays"] == {} and record["bytes"] == 0 and record["non_array_data"] == ["per_scan"]
            rows = record["metrics"]["per_scan"]
            assert [r["scan"] for r in rows] == ["scan_001", "scan_002"]
            assert all(set(r) == {"scan", "dice", "predicted_ml", "manual_ml"} and all(isinstance(r[k], float) for k in ("dice", "predicted_ml", "manual_ml"))
                       for r in rows)
        sent = (tmp_path / "run" / "sites" / s / "outgoing.jsonl").read_text(encoding="utf-8") + (tmp_path / f"{s}.json").read_text(encoding="utf-8")
        assert f"{s}_test_" not in sent  # case names stay at the site
    # a merge refuses files of other models, naming the file
    other = json.loads((tmp_path / "site_b.json").read_text(encoding="utf-8"))
    other["models"][0]["sha256"] = "0" * 64
    (tmp_path / "bad.json").write_text(json.dumps(other), encoding="utf-8")
    with pytest.raises(InputError, match="bad.json.*other models"):
        evaluation.merge_site_metrics([tmp_path / "site_a.json", tmp_path / "bad.json"], [])
