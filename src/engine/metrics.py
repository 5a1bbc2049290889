"""Classification metrics from accumulated logits: top-k accuracy, loss, confusion matrix, per-class precision /
recall / F1 with macro and weighted averages, and a text report, following sklearn's `classification_report`
(zero_division=0; macro averages over the classes among the labels or predictions). Rows of the confusion matrix
are true classes; classes of the model without images in the split are listed as `classes_without_images`.
"""
import numpy as np


class ClassificationMeter:
    """Accumulates batches of (logits, integer labels) without keeping the logits."""

    def __init__(self, num_classes: int, topk=(1, 5)):
        self.num_classes = num_classes
        self.topk = topk
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.topk_correct = dict.fromkeys(topk, 0)
        self.loss_sum = 0.0
        self.count = 0

    def update(self, logits: np.ndarray, labels: np.ndarray):
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"the network gives {logits.shape[1]} scores per sample for {self.num_classes} classes")
        logits = logits.astype(np.float64)
        labels = labels.astype(np.int64)
        outside = labels[(labels < 0) | (labels >= self.num_classes)]
        if outside.size:
            raise ValueError(f"label {outside[0]} is outside the model's {self.num_classes} classes")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.loss_sum += float(-log_probs[np.arange(len(labels)), labels].sum())
        ranking = np.argsort(-logits, axis=1, kind="stable")
        for k in self.topk:
            self.topk_correct[k] += int((ranking[:, :min(k, self.num_classes)] == labels[:, None]).any(axis=1).sum())
        np.add.at(self.confusion, (labels, ranking[:, 0]), 1)
        self.count += len(labels)

    def state(self) -> np.ndarray:
        """Everything accumulated, as one float64 vector: confusion matrix, top-k hits, loss sum, count (counts
        stay exact up to 2**53). The element-wise sum of the states of meters that saw disjoint parts of a set
        (e.g. one shard per rank), given to `load_state`, gives the meter of the whole set."""
        hits = [self.topk_correct[k] for k in self.topk]
        return np.concatenate([self.confusion.ravel(), hits, [self.loss_sum, self.count]]).astype(np.float64)

    def load_state(self, state: np.ndarray):
        """Replace the accumulated figures by those of a `state()` vector."""
        state = np.asarray(state, dtype=np.float64)
        cells = self.num_classes ** 2
        if state.shape != (cells + len(self.topk) + 2,):
            raise ValueError(f"state of shape {state.shape} does not belong to a {self.num_classes}-class meter")
        self.confusion = np.rint(state[:cells]).astype(np.int64).reshape(self.num_classes, self.num_classes)
        self.topk_correct = {k: int(round(v)) for k, v in zip(self.topk, state[cells:cells + len(self.topk)])}
        self.loss_sum = float(state[-2])
        self.count = int(round(state[-1]))

    def report(self, class_names=None) -> dict:
        """Every figure as plain Python numbers (JSON-ready); accuracies and scores are fractions in [0, 1]."""
        if self.count == 0:
            raise ValueError("no samples were evaluated")
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        true_pos = np.diag(self.confusion).astype(np.float64)
        predicted = self.confusion.sum(axis=0)
        support = self.confusion.sum(axis=1)
        precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
        recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
        weights = support / support.sum()
        occurring = (support > 0) | (predicted > 0)  # sklearn's default label set: unique_labels(y_true, y_pred)
        per_class = [{"class": names[i], "precision": float(precision[i]), "recall": float(recall[i]),
                      "f1": float(f1[i]), "support": int(support[i])} for i in range(self.num_classes)]
        result = {f"top{k}": self.topk_correct[k] / self.count for k in self.topk}
        result.update({
            "loss": self.loss_sum / self.count,
            "num_samples": self.count,
            "per_class": per_class,
            "macro_avg": {"precision": float(precision[occurring].mean()), "recall": float(recall[occurring].mean()),
                          "f1": float(f1[occurring].mean()), "support": int(support.sum())},
            "weighted_avg": {"precision": float(weights @ precision), "recall": float(weights @ recall),
                             "f1": float(weights @ f1), "support": int(support.sum())},
            "class_names": names,
            "classes_without_images": [names[i] for i in range(self.num_classes) if support[i] == 0],
            "confusion_matrix": self.confusion.tolist(),
        })
        return result


def _score_line(label, scores, width, digits):
    return (f"{label:>{width}} {scores['precision']:>10.{digits}f} {scores['recall']:>10.{digits}f} "
            f"{scores['f1']:>10.{digits}f} {scores['support']:>8d}")


PRINTED_MATRIX_CLASSES = 30  # a wider confusion matrix is only written (JSON, PNG): 1000 columns do not read


def format_report(report: dict, digits: int = 4) -> str:
    """Readable text: summary line, one line per class, accuracy / macro / weighted lines, confusion matrix (up to
    PRINTED_MATRIX_CLASSES classes)."""
    names = report["class_names"]
    width = max(12, *(len(n) for n in names))
    total = report["num_samples"]
    lines = [f"samples {total}  top-1 {report['top1']:.{digits}f}  top-5 {report['top5']:.{digits}f}  "
             f"loss {report['loss']:.{digits}f}", "",
             f"{'':>{width}} {'precision':>10} {'recall':>10} {'f1-score':>10} {'support':>8}", ""]
    lines += [_score_line(r["class"], r, width, digits) for r in report["per_class"]]
    lines += ["", f"{'accuracy':>{width}} {'':>10} {'':>10} {report['top1']:>10.{digits}f} {total:>8d}",
              _score_line("macro avg", report["macro_avg"], width, digits),
              _score_line("weighted avg", report["weighted_avg"], width, digits), ""]
    missing = report["classes_without_images"]
    if missing:
        lines += [f"no images of {len(missing)} of the {len(names)} classes (zero rows below, left out of the macro "
                  f"averages unless predicted): {', '.join(missing)}", ""]
    if len(names) > PRINTED_MATRIX_CLASSES:
        lines.append(f"confusion matrix: {len(names)} x {len(names)}, in the JSON report and its PNG")
        return "\n".join(lines)
    lines.append("confusion matrix (rows: true class, columns: predicted class, numbered as the rows)")
    matrix = np.asarray(report["confusion_matrix"])
    cell = max(6, len(str(matrix.max())) + 1)
    label_width = width + 4
    lines.append(f"{'':>{label_width}}" + "".join(f"{i:>{cell}d}" for i in range(len(names))))
    lines += [f"{f'{names[i]} {i:>2d}':>{label_width}}" + "".join(f"{v:>{cell}d}" for v in matrix[i])
              for i in range(len(names))]
    return "\n".join(lines)
