"""Datasets: on-disk readers (readers.py), config-driven transforms (transforms.py), the pipeline (dataset.py)."""
from src.data.dataset import DATASETS, DatasetInfo, create_dataset
from src.data.readers import DatasetError, DatasetNotFoundError

__all__ = ["DATASETS", "DatasetError", "DatasetInfo", "DatasetNotFoundError", "create_dataset"]
