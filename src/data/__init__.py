"""Datasets: on-disk readers (readers.py), config-driven transforms (transforms.py), the pipeline (dataset.py)."""
from src.data.dataset import (DATASETS, DatasetInfo, SplitData, create_dataset, dataset_statistics,
                              image_file_preprocess, read_split, split_class_names)
from src.data.readers import DatasetError, DatasetNotFoundError

__all__ = ["DATASETS", "DatasetError", "DatasetInfo", "DatasetNotFoundError", "create_dataset", "dataset_statistics",
           "image_file_preprocess", "read_split", "SplitData", "split_class_names"]
