"""The evaluation pipeline pieces that are not covered by the CLI test."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from iadtutor.data import anomaly_kind
from iadtutor.metrics import auroc_by_kind
from iadtutor.tools.toy import prepare_data_root


@pytest.mark.parametrize("name, kind", [("good", "good"), ("ok", "good"), ("logical_anomalies", "logical"),
                                        ("structural_anomalies", "structural"), ("logical_missing", "logical"),
                                        ("structural_scratch", "structural"), ("scratch", "other")])
def test_anomaly_kind(name, kind):
    assert anomaly_kind(name) == kind


def test_auroc_by_kind_compares_good_with_one_kind_only():
    types = ["good", "good", "good", "logical_missing", "logical_extra", "structural_scratch"]
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.5, 0.3, 0.2, 0.9, 0.8])
    result = auroc_by_kind([anomaly_kind(t) for t in types], labels, scores)
    assert result["image_auroc_logical"] == pytest.approx(roc_auc_score([0, 0, 0, 1, 1], [0.1, 0.5, 0.3, 0.2, 0.9]))
    assert result["image_auroc_structural"] == 1.0
    assert auroc_by_kind(["good", "other"], np.array([0, 1]), np.array([0.0, 1.0])) == {}


def test_prepare_data_root_names_missing_real_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare_data_root("mvtec_ad", tmp_path / "nowhere")
