"""The dataset-level files of a dsr derivatives folder: ``dataset_description.json``, ``.bidsignore`` and
``metrics_description.json`` (the names are those of :mod:`dsr.io.derivatives`).

``Sources`` in the sidecars and provenance are BIDS URIs ``bids:raw:<path in the input dataset>``
(:func:`dsr.io.bids.bids_uri`); ``DatasetLinks`` maps ``raw`` to the input dataset, as the BIDS
specification's "BIDS URI" section requires for a named dataset.

``metrics_description.json`` describes every key a fit's ``metrics.json`` can hold, in the form BIDS uses
for columns and metadata (``{key: {"Description", "Units"}}``); it is written once at the root rather than
beside every ``metrics.json`` (whose own ``.json`` name leaves no room for a sidecar of the same name).
"""
from __future__ import annotations

from pathlib import Path

from dsr import __version__
from dsr.analysis import metrics_record
from dsr.io.atomic import write_json
from dsr.io.bids import dataset_link
from dsr.io.derivatives import INPUT_DATASET, METRICS_DESCRIPTION, write_bidsignore

#: Unit and meaning of the keys a fit adds to ``metrics.json`` beside the metrics record's own
#: (:func:`dsr.pipelines.fit_array.fit`, :func:`dsr.pipelines.writer.write_outputs`).
FIT_RECORD_KEYS = {
    "status": ("", "ok, or diverged when training stopped on a non-finite loss"),
    "fit_seconds": ("s", "training time (a stacked fit's share of the stacked training)"),
    "total_seconds": ("s", "training and evaluation time of the fit"),
    "epochs": ("", "training epochs done"),
    "seed": ("", "random seed of the fit"),
    "config_hash": ("", "hash of the resolved configuration (the fit's identity, see its provenance)"),
    "tr": ("s", "sampling interval (repetition time)"),
    "n_samples": ("", "time points of the recording"),
    "n_train": ("", "time points of the training part (the rest is held out)"),
    "n_channels": ("", "observed channels (atlas regions)"),
    "filter_taps": ("", "length of the decoder's haemodynamic filter in samples"),
    "device": ("", "device the fit was trained on"),
    "stacked_with": ("", "fits trained together in one stacked model (stack executor only)"),
    "source": ("", "the recording fitted, a BIDS URI resolved through DatasetLinks"),
}

HOW_TO_ACKNOWLEDGE = (
    "Please cite Volkmann E, Brändle A, Durstewitz D, Koppe G (2024): A scalable generative model for "
    "dynamical system reconstruction from neuroimaging data. Advances in Neural Information Processing "
    "Systems 37 (NeurIPS 2024), arXiv:2411.02949; and the dsr software and the method papers listed in "
    "dsr's CITATION.cff.")


def metrics_description() -> dict[str, dict[str, str]]:
    """Every key ``metrics.json`` can hold: ``{key: {"Description": meaning, "Units": unit}}`` (``Units``
    left out for a value without one)."""
    keys = {k: (v["unit"], v["meaning"]) for k, v in metrics_record.describe().items()}
    keys.update(FIT_RECORD_KEYS)
    return {k: {"Description": meaning, **({"Units": unit} if unit else {})} for k, (unit, meaning) in keys.items()}


def write_description(output_dir: Path, bids_dir: Path) -> None:
    """``dataset_description.json``, ``.bidsignore`` (a user's own lines kept) and
    ``metrics_description.json`` of the derivatives folder, each written atomically."""
    output_dir = Path(output_dir)
    write_json(output_dir / METRICS_DESCRIPTION, metrics_description())
    write_bidsignore(output_dir)
    link = dataset_link(bids_dir)
    write_json(output_dir / "dataset_description.json", {
        "Name": "dsr: dynamical systems reconstruction", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "dsr", "Version": __version__,
                         "Description": "convSSM trained by generalized teacher forcing; the keys of every "
                                        f"metrics.json are described in {METRICS_DESCRIPTION}"}],
        "HowToAcknowledge": HOW_TO_ACKNOWLEDGE,
        "SourceDatasets": [{"URL": link}],
        "DatasetLinks": {INPUT_DATASET: link}})
