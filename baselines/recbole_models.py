"""SASRec, BERT4Rec and LightGCN through RecBole 1.2.1, on r2bench's protocol.

RecBole supplies the models, datasets, data loaders and the training epoch; r2bench
supplies what is trained on, how the epoch is selected and what is scored:

* **Training data: train users only.** Their chronological sequences (from
  ``interactions.parquet``) are written as a RecBole atomic ``.inter`` file in a
  temporary folder. The row's position in the user's sequence is its timestamp, so
  RecBole's sort reproduces the benchmark's tie-broken order exactly. RecBole's
  augmentation with ``MAX_ITEM_LIST_LENGTH = max_seq_length`` (20) then yields one
  example per target position with the preceding <= 20 items: exactly the benchmark's
  train instances, so the history lengths (and positions) seen in training are the
  ones used at inference. BERT4Rec uses ``max_seq_length + 1`` (its mask token takes a
  slot; see :class:`BERT4RecMethod`).
* **Epoch selection on val, with r2bench's evaluator.** After every epoch the val
  instances' fixed 20 candidates are scored and NDCG@10 is computed with
  :func:`r2bench.eval.metrics.per_instance_metrics` (exact tie handling), so what is
  tuned is what is reported. The best epoch's ``state_dict`` is kept in memory
  (RecBole's checkpoints cannot be re-loaded on torch >= 2.6 and would litter the
  disk); training stops after ``patience`` epochs without improvement.
* **Scoring from the instance's own history.** Sequential models read the instance's
  ``history`` (oldest first, left-aligned, zero-padded) and score every item with
  ``full_sort_predict``; the 20 candidates are gathered from that row. Val/test
  targets are never seen in training.
* **Cold items.** A candidate RecBole never saw in training has no embedding; it gets
  a defined score: ``(lowest score of the row's known candidates) - 1``, i.e. it ranks
  below every known candidate, tied with the other cold ones (the evaluator takes the
  exact expectation over ties). History items RecBole never saw are dropped from the
  input sequence; a row with no known history item gets constant scores (all tied).
  All of these are counted in ``info()``.

Every RecBole compatibility fix and side-effect guard lives in
:mod:`baselines.recbole_compat` and is active only inside ``fit``/``score``: nothing is
written to the working directory, and ``sys.argv``, ``CUDA_VISIBLE_DEVICES``, the
global RNG states, torch's thread count and anomaly mode are as they were afterwards.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

from baselines import recbole_compat as compat
from baselines.recbole_configs import (  # configs live apart; re-exported here
    CONFIG_DIR,
    BERT4RecConfig,
    LightGCNConfig,
    SASRecConfig,
    load_yaml_defaults,
)
from r2bench.methods import BaseMethod
from r2bench.progress import bar, enabled as progress_enabled

if TYPE_CHECKING:
    from r2bench.data.benchmark import Benchmark

DATASET = "r2b"  # the RecBole dataset name inside the temporary folder


# --------------------------------------------------------------------------- adapter


class _RecBoleMethod(BaseMethod):
    """Shared fit/score machinery; subclasses name the RecBole model and its settings."""

    model_name: ClassVar[str] = ""
    sequential: ClassVar[bool] = True
    transferable: ClassVar[bool] = False  # item/user embeddings are benchmark-specific
    id_based: ClassVar[bool] = True
    #: RecBole settings that are not model hyper-parameters (ours: not overridable by
    #: ``recbole`` because the protocol depends on them).
    _FIXED: ClassVar[dict[str, Any]] = {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "field_separator": "\t",
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "worker": 0,
        "reproducibility": True,
        "shuffle": True,
    }

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        self._model = None
        self._item_rid: dict[str, int] = {}
        self._user_rid: dict[str, int] = {}
        self._info: dict[str, Any] = {}
        self._epochs: list[dict[str, Any]] = []
        self._log = compat.LogCapture()
        self._counts = {"candidates": 0, "unknown_candidates": 0, "history_items": 0,
                        "unknown_history_items": 0, "rows": 0, "rows_without_known_history": 0,
                        "unknown_users": 0}

    # ----------------------------------------------------------------- settings
    @property
    def threads(self) -> int:
        return int(self.config.threads) or compat.default_threads()

    def seq_len(self) -> int:
        """RecBole's MAX_ITEM_LIST_LENGTH (BERT4Rec adds a slot for its mask token)."""
        return int(self.config.max_seq_length)

    def model_settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def recbole_settings(self, data_path: Path) -> dict[str, Any]:
        c = self.config
        settings: dict[str, Any] = dict(self.model_settings())
        settings.update(c.recbole or {})
        settings.update(self._FIXED)
        settings.update({
            "data_path": str(data_path),
            "checkpoint_dir": str(data_path / "saved"),
            "seed": int(self.seed),
            "gpu_id": "0" if c.use_gpu else "",
            "use_gpu": bool(c.use_gpu),
            "epochs": int(c.epochs),
            "learning_rate": float(c.learning_rate),
            "weight_decay": float(c.weight_decay),
            "train_batch_size": int(c.train_batch_size),
            "eval_batch_size": int(c.eval_batch_size),
            "stopping_step": int(c.patience),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"] if self.sequential else ["user_id", "item_id"]},
            "eval_args": {"split": {"RS": [1.0, 0.0, 0.0]}, "group_by": "user",
                          "order": "TO" if self.sequential else "RO", "mode": "full"},
        })
        if self.sequential:
            settings["MAX_ITEM_LIST_LENGTH"] = self.seq_len()
        return settings

    # ----------------------------------------------------------------- data
    def training_rows(self, benchmark: "Benchmark") -> pl.DataFrame:
        """user_id, item_id, timestamp (= position in the user's sequence) to train on."""
        train_users = benchmark.split("train").select("user_id").unique()
        inter = benchmark.interactions.join(train_users, on="user_id", how="semi", maintain_order="left")
        return inter.select(
            "user_id", "item_id",
            pl.int_range(pl.len()).over("user_id").cast(pl.Float64).alias("timestamp"),
        )

    def write_atomic(self, rows: pl.DataFrame, folder: Path) -> dict[str, str]:
        """Write ``<folder>/r2b/r2b.inter`` with integer tokens; return item_id -> token.

        Tokens are our own dense integers (as strings) so that ids with tabs, spaces or
        pandas' NA spellings ("NA", "null") cannot be misread by RecBole's CSV reader.
        """
        compat.check_complete(rows, "training interactions")
        items = sorted(set(rows["item_id"].to_list()))
        users = sorted(set(rows["user_id"].to_list()))
        item_tok = {iid: str(i + 1) for i, iid in enumerate(items)}
        user_tok = {uid: str(i + 1) for i, uid in enumerate(users)}
        out = rows.with_columns(
            pl.col("user_id").replace_strict(user_tok).alias("user_id"),
            pl.col("item_id").replace_strict(item_tok).alias("item_id"),
        )
        header = {"user_id": "user_id:token", "item_id": "item_id:token", "timestamp": "timestamp:float"}
        out = out.select([c for c in header if c in out.columns]).rename({c: header[c] for c in out.columns if c in header})
        path = folder / DATASET / f"{DATASET}.inter"
        path.parent.mkdir(parents=True)
        out.write_csv(path, separator="\t")
        self._user_tok = user_tok
        return item_tok

    # ----------------------------------------------------------------- fit
    def fit(self, benchmark: "Benchmark") -> None:
        from r2bench.errors import R2BenchError

        for key in ("epochs", "patience", "train_batch_size", "eval_batch_size"):
            if int(getattr(self.config, key)) < 1:
                raise R2BenchError(f"{self.name}: config {key} must be >= 1, got {getattr(self.config, key)}")
        rows = self.training_rows(benchmark)
        if rows.height == 0:
            raise R2BenchError(f"{self.name}: benchmark {benchmark.path} has no train interactions to learn from")
        self._epochs, self._log = [], compat.LogCapture()
        val = benchmark.split("val")
        with tempfile.TemporaryDirectory(prefix="r2bench-recbole-") as tmp, \
                compat.recbole_session(self._log, self.threads, self.config.anomaly_mode):
            import torch
            from recbole.config import Config
            from recbole.data import create_dataset, data_preparation
            from recbole.utils import get_model, get_trainer, init_seed

            item_tok = self.write_atomic(rows, Path(tmp))
            rc = Config(model=self.model_name, dataset=DATASET, config_dict=self.recbole_settings(Path(tmp)))
            init_seed(rc["seed"], rc["reproducibility"])
            dataset = create_dataset(rc)
            train_data, _, _ = data_preparation(rc, dataset)
            init_seed(rc["seed"], rc["reproducibility"])
            model = get_model(rc["model"])(rc, train_data._dataset).to(rc["device"])
            trainer = get_trainer(rc["MODEL_TYPE"], rc["model"])(rc, model)
            self._model, self._device = model, rc["device"]
            tok2id = dataset.field2token_id
            self._item_rid = {iid: int(tok2id["item_id"][t]) for iid, t in item_tok.items()}
            self._user_rid = {uid: int(tok2id["user_id"][t]) for uid, t in self._user_tok.items()}

            best, best_state, best_epoch = -np.inf, None, 0
            with bar(total=int(self.config.epochs), desc=f"{self.name} epochs", unit="epoch") as pbar:
                for epoch in range(int(self.config.epochs)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    loss = trainer._train_epoch(train_data, epoch, show_progress=progress_enabled())
                    t1, c1 = time.perf_counter(), time.process_time()
                    ndcg = self._val_ndcg(val)
                    t2 = time.perf_counter()
                    loss = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
                    rec = {"epoch": epoch + 1, "train_loss": loss, "val_ndcg@10": ndcg,
                           "train_s": round(t1 - t0, 3), "train_cpu_s": round(c1 - c0, 3),
                           "val_s": round(t2 - t1, 3)}
                    self._epochs.append(rec)
                    self._log.add(f"epoch {epoch + 1}: train_loss={loss:.4f} val_ndcg@10={ndcg:.4f} "
                                  f"train_s={t1 - t0:.1f} val_s={t2 - t1:.1f}")
                    pbar.update(1)
                    pbar.set_postfix({"val_ndcg@10": f"{ndcg:.4f}"})
                    # without val instances (NaN) every epoch counts as the best so far
                    if best_state is None or np.isnan(ndcg) or ndcg > best:
                        best, best_epoch = ndcg, epoch + 1
                        best_state = copy.deepcopy(model.state_dict())
                    elif epoch + 1 - best_epoch >= int(self.config.patience):
                        self._log.add(f"early stop: no val improvement for {self.config.patience} epochs")
                        break
            model.load_state_dict(best_state)
            self._reset_caches()
            model.eval()
            self._info = {
                "recbole_version": compat.recbole_version(),
                "recbole_model": self.model_name,
                "recbole_config": {k: compat.json_safe(v) for k, v in rc.final_config_dict.items()},
                "selected_epoch": best_epoch,
                "best_val_ndcg@10": None if not np.isfinite(best) else float(best),
                "epochs_run": len(self._epochs),
                "val_ndcg@10_per_epoch": [_finite_or_none(r["val_ndcg@10"]) for r in self._epochs],
                "epoch_train_seconds": [r["train_s"] for r in self._epochs],
                "epoch_train_cpu_seconds": [r["train_cpu_s"] for r in self._epochs],
                "epoch_val_seconds": [r["val_s"] for r in self._epochs],
                "train_users": len(self._user_tok) if self.sequential else None,
                "train_interactions": rows.height,
                "train_examples": len(train_data.dataset),
                "known_items": len(self._item_rid),
                "threads": self.threads,
                "device": str(rc["device"]),
                "torch_version": torch.__version__,
            }
            self._info.update(self.extra_info(benchmark))

    def extra_info(self, benchmark: "Benchmark") -> dict[str, Any]:
        return {}

    def _reset_caches(self) -> None:
        """LightGCN caches propagated embeddings outside its state_dict."""
        for name in ("restore_user_e", "restore_item_e"):
            if hasattr(self._model, name):
                setattr(self._model, name, None)

    def _val_ndcg(self, val: pl.DataFrame) -> float:
        if val.height == 0:
            return float("nan")
        from r2bench.eval.metrics import per_instance_metrics

        scores, _ = self._score_matrix(val)
        return float(per_instance_metrics(scores, val["target_index"].to_numpy(), ("ndcg@10",))["ndcg@10"].mean())

    # ----------------------------------------------------------------- score
    def score(self, benchmark: "Benchmark", instances: pl.DataFrame) -> np.ndarray:
        if self._model is None:
            from r2bench.errors import R2BenchError

            raise R2BenchError(f"{self.name}: score() called before fit()")
        with compat.recbole_session(None, self.threads, self.config.anomaly_mode):
            scores, counts = self._score_matrix(instances)
        for k, v in counts.items():
            self._counts[k] += v
        return scores

    def _score_matrix(self, instances: pl.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        import torch

        cands = instances["candidates"].to_list()
        n = len(cands)
        k = len(cands[0]) if n else 0
        cand_rid = np.array([[self._item_rid.get(c, 0) for c in row] for row in cands], dtype=np.int64).reshape(n, k)
        out = np.zeros((n, k), dtype=np.float64)
        counts = {"rows": n, "candidates": n * k, "unknown_candidates": int((cand_rid == 0).sum())}
        self._model.eval()
        bs = max(1, int(self.config.eval_batch_size))
        with torch.no_grad():
            for start in range(0, n, bs):
                sl = slice(start, min(n, start + bs))
                raw, valid = self.predict_rows(instances[sl], counts)
                raw = raw.to("cpu", torch.float64).numpy()
                out[sl][valid] = np.take_along_axis(raw, cand_rid[sl][valid], axis=1)
        known = cand_rid != 0
        # cold candidates rank below every known one of their row, tied among themselves
        row_min = np.where(known, out, np.inf).min(axis=1)
        row_min = np.where(np.isfinite(row_min), row_min, 1.0)
        out = np.where(known, out, (row_min - 1.0)[:, None])
        return out, counts

    def predict_rows(self, rows: pl.DataFrame, counts: dict[str, int]) -> tuple[Any, np.ndarray]:
        """Scores over all RecBole items for ``rows`` -> (tensor [B, n_items], valid rows mask)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- outputs
    def info(self) -> dict[str, Any]:
        out = dict(self._info)
        out["scoring"] = dict(self._counts)
        out["cold_candidate_score"] = "row's lowest known-candidate score - 1 (ties among cold candidates)"
        return out

    def artifacts(self) -> dict[str, pl.DataFrame]:
        tables = {"recbole_log": pl.DataFrame({"line": self._log.lines}, schema={"line": pl.String})}
        if self._epochs:
            tables["epochs"] = pl.DataFrame(self._epochs)
        return tables


class _SequentialMethod(_RecBoleMethod):
    sequential = True
    #: items in front of the history (BERT4Rec: one padding slot the model drops)
    lead_pad: ClassVar[int] = 0

    def model_settings(self) -> dict[str, Any]:
        c = self.config
        s = {
            "hidden_size": c.hidden_size, "inner_size": c.inner_size, "n_layers": c.n_layers,
            "n_heads": c.n_heads, "hidden_dropout_prob": c.hidden_dropout_prob,
            "attn_dropout_prob": c.attn_dropout_prob, "loss_type": c.loss_type,
        }
        # CE scores against every item; BPR needs one sampled negative per example
        s["train_neg_sample_args"] = None if c.loss_type == "CE" else {"distribution": "uniform", "sample_num": 1}
        return s

    def predict_rows(self, rows: pl.DataFrame, counts: dict[str, int]) -> tuple[Any, np.ndarray]:
        import torch
        from recbole.data.interaction import Interaction

        keep = int(self.config.max_seq_length)
        L = self.seq_len()
        seqs = np.zeros((rows.height, L), dtype=np.int64)
        lens = np.zeros(rows.height, dtype=np.int64)
        for i, hist in enumerate(rows["history"].to_list()):
            rids = [self._item_rid.get(h, 0) for h in hist]
            counts["history_items"] = counts.get("history_items", 0) + len(rids)
            counts["unknown_history_items"] = counts.get("unknown_history_items", 0) + rids.count(0)
            rids = [r for r in rids if r][-keep:]
            if not rids:
                continue
            seq = [0] * self.lead_pad + rids
            seqs[i, : len(seq)] = seq
            lens[i] = len(seq)
        valid = lens > 0
        counts["rows_without_known_history"] = counts.get("rows_without_known_history", 0) + int((~valid).sum())
        m = self._model
        inter = Interaction({m.ITEM_SEQ: torch.from_numpy(seqs[valid]), m.ITEM_SEQ_LEN: torch.from_numpy(lens[valid])})
        if not valid.any():
            return torch.zeros((0, m.n_items)), valid
        raw = m.full_sort_predict(inter.to(self._device)).view(int(valid.sum()), -1)
        return raw, valid


class SASRecMethod(_SequentialMethod):
    """SASRec (Kang & McAuley 2018) via RecBole, cross-entropy over all items.

    Trained on train users' sequences cut to the last ``max_seq_length`` (20) items;
    scores a val/test instance from its own history (see the module docstring).
    """

    name = "sasrec"
    description = "SASRec (RecBole 1.2.1)"
    Config = SASRecConfig
    model_name = "SASRec"

    def extra_info(self, benchmark: "Benchmark") -> dict[str, Any]:
        n_train = benchmark.split("train").height
        return {"train_instances": n_train, "train_examples_match_instances": self._info["train_examples"] == n_train}


class BERT4RecMethod(_SequentialMethod):
    """BERT4Rec (Sun et al. 2019) via RecBole, Cloze training with RecBole's masking.

    RecBole's ``reconstruct_test_data`` appends the mask token after the history and
    then drops the *first* column, which would lose the oldest history item. The
    history is therefore passed as ``[0] + history`` with ``MAX_ITEM_LIST_LENGTH =
    max_seq_length + 1`` (21): the model sees all 20 items and the mask at position 21,
    and training prefixes reach 21 items too, so that position is trained.
    """

    name = "bert4rec"
    description = "BERT4Rec (RecBole 1.2.1)"
    Config = BERT4RecConfig
    model_name = "BERT4Rec"
    lead_pad = 1

    def seq_len(self) -> int:
        return int(self.config.max_seq_length) + 1

    def model_settings(self) -> dict[str, Any]:
        s = super().model_settings()
        s.update({"mask_ratio": self.config.mask_ratio, "ft_ratio": self.config.ft_ratio, "transform": "mask_itemseq"})
        s["train_neg_sample_args"] = None
        return s


class LightGCNMethod(_RecBoleMethod):
    """LightGCN (He et al. 2020) via RecBole, BPR loss with one uniform negative.

    **Fold-in policy.** LightGCN scores *users*, who must be nodes of its graph. The
    graph (and the BPR training data) holds every interaction of the train users plus,
    for each val/test instance, its user's **history** items (the <= 20 items the
    instance shows to every method); val/test **targets never join** the graph. Val/test
    instances are then scored from their user's node. Consequences: the scores of an
    instance come from the history folded in at fit time (a perturbed history passed
    to ``score`` does not change them), and a user absent from the graph gets constant
    scores (counted as ``unknown_users``).
    """

    name = "lightgcn"
    description = "LightGCN (RecBole 1.2.1), val/test histories folded in"
    Config = LightGCNConfig
    model_name = "LightGCN"
    sequential = False

    def model_settings(self) -> dict[str, Any]:
        c = self.config
        return {"embedding_size": c.embedding_size, "n_layers": c.n_layers, "reg_weight": c.reg_weight,
                "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}

    def training_rows(self, benchmark: "Benchmark") -> pl.DataFrame:
        train = super().training_rows(benchmark).select("user_id", "item_id")
        held = benchmark.instances.filter(pl.col("split") != "train").select("user_id", "history")
        folded = held.explode("history").rename({"history": "item_id"}).drop_nulls().unique(maintain_order=True)
        self._n_folded = folded.height
        return pl.concat([train, folded])

    def extra_info(self, benchmark: "Benchmark") -> dict[str, Any]:
        return {"fold_in": "val/test histories join the graph, targets never", "folded_in_interactions": self._n_folded,
                "graph_users": len(self._user_rid)}

    def predict_rows(self, rows: pl.DataFrame, counts: dict[str, int]) -> tuple[Any, np.ndarray]:
        import torch
        from recbole.data.interaction import Interaction

        uids = np.array([self._user_rid.get(u, 0) for u in rows["user_id"].to_list()], dtype=np.int64)
        valid = uids > 0
        counts["unknown_users"] = counts.get("unknown_users", 0) + int((~valid).sum())
        m = self._model
        if not valid.any():
            return torch.zeros((0, m.n_items)), valid
        raw = m.full_sort_predict(Interaction({m.USER_ID: torch.from_numpy(uids[valid])}).to(self._device))
        return raw.view(int(valid.sum()), -1), valid


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


__all__ = ["CONFIG_DIR", "SASRecMethod", "BERT4RecMethod", "LightGCNMethod", "SASRecConfig", "BERT4RecConfig",
           "LightGCNConfig", "load_yaml_defaults"]
