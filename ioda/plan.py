"""The experiment plan: which runs a validated config asks for, and where each one's files live.

Single source of truth for the file layout, shared by the Snakemake workflow (workflow/rules/common.smk
imports it) and the report commands (aggregate/tables/figures/summary), so both always agree on which runs
exist. A *cell* is (task, backbone, variant); a *run* is one adaptation inside a cell:
  - variants guided by one target image run N times, `img0 .. img{N-1}` (the first N pool images, sorted);
  - the source model itself (method `none`) is evaluated once (run id `source`): adapting it would copy it;
  - a method trained on all target pairs (the fine-tune) does not depend on a single image: one run, id `all`.
Which applies is the variant's method's (ioda.adapt.variants.METHODS), never its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ioda.adapt.variants import BASELINE, VARIANTS
from ioda.errors import IodaError



@dataclass(frozen=True, order=True)
class Run:
    task: str
    backbone: str
    variant: str
    run: str  # img<i> | source | all

    @property
    def image_index(self) -> int | None:
        return int(self.run[3:]) if self.run.startswith("img") else None


class Plan:
    """Paths and run lists for one validated config (see ioda.config.load_config)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.data = Path(cfg["run"]["data_dir"])
        self.results = Path(cfg["run"]["results_dir"])
        self.scale = cfg["run"]["scale"]
        self.tasks: dict = cfg["experiments"]["tasks"]
        self.tables: dict = cfg["experiments"]["tables"]
        self._check()

    # ---- consistency checks the JSON schema cannot express -----------------------------------------
    def _check(self) -> None:
        datasets, backbones = self.cfg["datasets"], self.cfg["backbones"]
        for name, task in self.tasks.items():
            for role in ("source", "target"):
                if task[role] not in datasets:
                    raise IodaError(
                        f"config: key 'experiments.tasks.{name}.{role}': dataset {task[role]!r} is not listed under 'datasets'"
                    )
        for name, task in self.tasks.items():
            val = task.get("validation")
            if val is None:
                continue
            if val not in self.tasks or val == name:
                raise IodaError(f"config: key 'experiments.tasks.{name}.validation': expected another task "
                                f"of experiments.tasks, got {val!r}")
            if self.tasks[val]["source"] != task["source"]:
                raise IodaError(f"config: key 'experiments.tasks.{name}.validation': task {val!r} adapts from "
                                f"{self.tasks[val]['source']!r}, expected the same source dataset "
                                f"{task['source']!r} (the step count is chosen for the same source model)")
        for name, task in self.tasks.items():
            pool = self.pool_size(name)
            if pool is not None and task["n_images"] > pool:
                raise IodaError(f"config: key 'experiments.tasks.{name}.n_images': {task['n_images']} images, but "
                                f"the pool split {task['pool_split']!r} of {task['target']} has {pool}")
        if not self.tables:
            raise IodaError("config: key 'experiments.tables': expected at least one of table1..table6")
        enabled = set(self.cfg["variants"])
        for tname, table in self.tables.items():
            for t in table["tasks"]:
                if t not in self.tasks:
                    raise IodaError(f"config: key 'experiments.tables.{tname}.tasks': unknown task {t!r} (expected one of experiments.tasks)")
            for b in table["backbones"]:
                if b not in backbones:
                    raise IodaError(f"config: key 'experiments.tables.{tname}.backbones': unknown backbone {b!r} (expected one of backbones)")
            for v, bbs in (table.get("only") or {}).items():
                for b in bbs:
                    if b not in table["backbones"]:
                        raise IodaError(f"config: key 'experiments.tables.{tname}.only.{v}': backbone {b!r} is not in this table's backbones")
            for v in table["variants"]:
                if v not in enabled:
                    raise IodaError(f"config: key 'experiments.tables.{tname}.variants': variant {v!r} is not enabled in 'variants'")
        for b, src in self.pretrained():
            bb = backbones[b]
            if bb.get("preset") is None and not bb.get("weights"):
                raise IodaError(f"config: key 'backbones.{b}': expected a preset or weights")
            if bb.get("preset") is None and bb.get("official_source") not in (None, src):
                raise IodaError(f"config: key 'backbones.{b}.preset': needed to pre-train on source {src!r} "
                                f"(the weights are for {bb['official_source']!r} only)")
        rep = self.cfg["report"]
        for key in ("curves", "paired", "visuals"):
            cell = rep.get(key)
            if cell and (cell["task"], cell["backbone"]) not in {(c[0], c[1]) for c in self.cells()}:
                raise IodaError(f"config: key 'report.{key}': task {cell['task']!r} x backbone {cell['backbone']!r} is in no table")
            if cell:
                for v in cell["variants"]:
                    if (cell["task"], cell["backbone"], v) not in self.cells():
                        raise IodaError(f"config: key 'report.{key}.variants': {v!r} is not run for that task and backbone by any table")
        if rep.get("tsne_task") and rep["tsne_task"] not in self.tasks:
            raise IodaError(f"config: key 'report.tsne_task': unknown task {rep['tsne_task']!r}")
        self._check_encoder()

    def _check_encoder(self) -> None:
        from ioda.encoders import get_encoder_spec

        enc = self.cfg["encoder"]
        spec = get_encoder_spec(enc["name"])
        for t, b, v in self.cells():
            if VARIANTS[v].guidance == "text" and not spec.has_text:
                raise IodaError(f"config: key 'encoder.name': {enc['name']!r} has no text tower; variant {v!r} "
                                f"(table cell {t} x {b}) needs one (a CLIP encoder)")
        targets = {t["target"] for t in self.tasks.values()}
        for name in self.encoder_datasets():
            if name not in self.cfg["datasets"]:
                raise IodaError(f"config: key 'encoder.pretrain.datasets': dataset {name!r} is not listed under "
                                f"'datasets'")
            if name in targets:
                raise IodaError(f"config: key 'encoder.pretrain.datasets': dataset {name!r} is a task's target; "
                                f"the encoder trains on source-domain data only")

    # ---- the encoder -------------------------------------------------------------------------------------
    def encoder_trained_here(self) -> bool:
        """Whether the workflow trains the encoder (rule pretrain_encoder): a trainable entry without weights."""
        from ioda.encoders import get_encoder_spec

        enc = self.cfg["encoder"]
        return get_encoder_spec(enc["name"]).trained_here and not enc["weights"]

    def encoder_datasets(self) -> list[str]:
        if not self.encoder_trained_here():
            return []
        named = self.cfg["encoder"]["pretrain"]["datasets"]
        return list(named) if named else list(dict.fromkeys(t["source"] for t in self.tasks.values()))

    def encoder_file(self) -> Path:
        return self.results / "encoder" / f"{self.cfg['encoder']['name']}.safetensors"

    def encoder_weights(self, variant: str) -> str | None:
        """The weights file a variant's runs encode with; None: the architecture untrained."""
        if VARIANTS[variant].encoder == "untrained":
            return None
        if self.encoder_trained_here():
            return str(self.encoder_file())
        return self.cfg["encoder"]["weights"]

    # ---- what runs ---------------------------------------------------------------------------------------
    def table_cells(self) -> list[tuple[str, str, str]]:
        """The cells the tables show."""
        seen: dict[tuple[str, str, str], None] = {}
        for table in self.tables.values():
            only = table.get("only") or {}
            for t in table["tasks"]:
                for b in table["backbones"]:
                    for v in table["variants"]:
                        if v not in only or b in only[v]:
                            seen[(t, b, v)] = None
        return list(seen)

    def cells(self) -> list[tuple[str, str, str]]:
        """Every cell that runs: the tables' cells, then the cells their statistics need (support_cells)."""
        seen = dict.fromkeys(self.table_cells())
        seen.update(dict.fromkeys(self.support_cells()))
        return list(seen)

    def support_cells(self) -> list[tuple[str, str, str]]:
        """Cells no table shows but whose numbers a table's statistics read: the validation task's cell of every
        cell that evaluates along the way (its curves choose the validated step), and the source model of
        every (task, backbone) run (the paired difference's reference)."""
        table = self.table_cells()
        out: dict[tuple[str, str, str], None] = {}
        for t, b, v in table:
            val = self.tasks[t].get("validation")
            if val is not None and self.evaluates(Run(t, b, v, "")):
                out[(val, b, v)] = None
        for t, b, _ in [*table, *out]:
            out[(t, b, BASELINE)] = None
        return [c for c in out if c not in table]

    def run_ids(self, task: str, variant: str) -> list[str]:
        return VARIANTS[variant].run_ids(self.tasks[task]["n_images"])

    def runs(self) -> list[Run]:
        return [Run(t, b, v, r) for (t, b, v) in self.cells() for r in self.run_ids(t, v)]

    def adapt_runs(self) -> list[Run]:
        return [r for r in self.runs() if VARIANTS[r.variant].trains]

    def tsne_task(self) -> str:
        return self.cfg["report"].get("tsne_task") or next(iter(self.tasks))

    def masks_needed(self) -> list[tuple[str, int]]:
        """(target dataset, image index) pairs that need an instance label map."""
        out: dict[tuple[str, int], None] = {}
        for r in self.adapt_runs():
            if VARIANTS[r.variant].needs_labels:
                out[(self.tasks[r.task]["target"], r.image_index)] = None
        out[(self.tasks[self.tsne_task()]["target"], 0)] = None  # Fig. 4 region masks
        return list(out)

    def pretrained(self) -> list[tuple[str, str]]:
        """(backbone, source dataset) pairs whose source model is needed."""
        out: dict[tuple[str, str], None] = {}
        for t, b, _ in self.cells():
            out[(b, self.tasks[t]["source"])] = None
        return list(out)

    def uses_official(self, backbone: str, source: str) -> bool:
        bb = self.cfg["backbones"][backbone]
        return bool(bb.get("weights")) and bb.get("official_source") in (None, source)

    def evaluates(self, run: Run) -> bool:
        """Whether this run evaluates the target test set every adapt.eval_every steps (curve.csv: final and
        oracle best step): every direction-loss adaptation when eval_every > 0."""
        return self.cfg["adapt"]["eval_every"] > 0 and VARIANTS[run.variant].direction

    def curve_cell(self, run: Run) -> bool:
        """Whether this run's curve is plotted (the report.curves cell)."""
        cell = self.cfg["report"].get("curves")
        return bool(
            cell and self.cfg["adapt"]["eval_every"] > 0 and run.task == cell["task"]
            and run.backbone == cell["backbone"] and run.variant in cell["variants"]
        )

    def keeps_images(self, run: Run) -> bool:
        mode = self.cfg["report"]["save_images"]
        return mode == "all" or (mode == "first" and run.run == self.run_ids(run.task, run.variant)[0])

    # ---- where things live ---------------------------------------------------------------------------
    def pool_size(self, task: str) -> int | None:
        """Images in a task's pool split: the prepared manifest's count (when it was prepared with this config's
        spec and from real files: stand-in data or another spec is prepared again), else the registry's exact count
        (no config override of the dataset); None where neither tells (a demo's tiles are counted when built)."""
        import json

        from ioda.data.registry import REGISTRY

        t = self.tasks[task]
        manifest = self.manifest(t["target"])
        spec = (self.cfg["datasets"].get(t["target"]) or {}).get("spec")
        if manifest.is_file():
            try:
                m = json.loads(manifest.read_text())
                if not m.get("standins") and (m.get("spec_override") or {}) == (spec or {}):
                    return int(m["splits"][t["pool_split"]]["count"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return None
        entry = REGISTRY.get(t["target"])
        if entry is None or spec or t["pool_split"] not in entry.splits:
            return None
        return entry.splits[t["pool_split"]].count

    def manifest(self, name: str) -> Path:
        return self.data / name / "manifest.json"

    def split_dir(self, task: str, role: str) -> Path:
        """role: source (source train split), pool, train (fine-tune pairs) or test (target)."""
        t = self.tasks[task]
        if role == "source":
            return self.data / t["source"] / t["source_split"]
        return self.data / t["target"] / t[f"{role}_split"]

    def source_split(self, dataset: str) -> str:
        """Training split of a source dataset (the first task naming it decides)."""
        return next(t["source_split"] for t in self.tasks.values() if t["source"] == dataset)

    def pretrained_model(self, backbone: str, source: str) -> Path:
        return self.results / "pretrain" / backbone / f"{source}.safetensors"

    def weights_only(self, backbone: str) -> bool:
        """Trained weights used as they are (no preset): no pre-training stage, no import."""
        bb = self.cfg["backbones"][backbone]
        return bb.get("preset") is None and bool(bb.get("weights"))

    def registered_weights(self, backbone: str) -> str | None:
        from ioda.data.assets import WEIGHTS

        w = self.cfg["backbones"][backbone].get("weights")
        return w if w in WEIGHTS else None

    def source_model(self, backbone: str, source: str) -> Path:
        """The model adaptation starts from: the pre-trained/imported safetensors, or, for weights-only
        backbones, the weights file (registered names are fetched to results/weights/<name>.pth)."""
        if not self.weights_only(backbone):
            return self.pretrained_model(backbone, source)
        name = self.registered_weights(backbone)
        if name is not None:
            from ioda.data.assets import WEIGHTS

            return self.results / "weights" / WEIGHTS[name].filename
        return Path(self.cfg["backbones"][backbone]["weights"])

    def labels(self, dataset: str, index: int) -> Path:
        return self.results / "masks" / dataset / f"img{index}.npz"

    def adapt_dir(self, run: Run) -> Path:
        return self.results / "adapt" / run.backbone / run.task / run.variant / run.run

    def eval_dir(self, run: Run) -> Path:
        return self.results / "eval" / run.backbone / run.task / run.variant / run.run

    def metrics_dir(self) -> Path:
        return self.results / "metrics"

    def tables_dir(self) -> Path:
        return self.results / "tables"

    def figures_dir(self) -> Path:
        return self.results / "figures"
