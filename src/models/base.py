"""`ImageClassifier`: the part of timm's model contract (docs/CONTRACTS.md) that every family here does alike."""
import mindspore.nn as nn


class ImageClassifier(nn.Cell):
    """`construct(x) = forward_head(forward_features(x))`, `forward_stages(x)` and `reset_classifier(n)`.

    A family builds `num_classes`, `head_hidden_size` (the width its classifier reads), a stem (by default
    `conv_stem` -> `bn1` -> `act1`, the official names; else its own `_stem`), its stage cells (`blocks`, or others
    returned by `_stage_cells`), `_feature_idx` (the stages `feature_info` describes) and the classifier cell named
    `classifier_name` (from `_make_classifier`, where its random init falls in the build order), and writes
    `forward_features` / `forward_head`.
    """

    classifier_name = "classifier"

    def _make_classifier(self, num_classes):
        return nn.Dense(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes):
        """New, freshly initialised classifier for fine-tuning (0: none, `construct` then returns pre-logits)."""
        self.num_classes = num_classes
        setattr(self, self.classifier_name, self._make_classifier(num_classes))

    def _stem(self, x):
        return self.act1(self.bn1(self.conv_stem(x)))

    def _stage_cells(self):
        return self.blocks

    def forward_stages(self, x):
        """Feature maps described by `feature_info`, shallow to deep (for detection / segmentation necks)."""
        x = self._stem(x)
        outs = []
        for i, stage in enumerate(self._stage_cells()):
            x = stage(x)
            if i in self._feature_idx:
                outs.append(x)
        return outs

    def construct(self, x):
        return self.forward_head(self.forward_features(x))
