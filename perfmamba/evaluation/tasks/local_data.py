"""`custom_dataset` loaders for the task YAMLs beside this file (lm-eval imports this file by path).

lm-eval calls them with the task metadata and dataset_kwargs as keywords (e.g. data_files=...).
"""
from perfmamba.evaluation.local_tasks import load_task_dataset


def lambada_local(**kwargs):
    return load_task_dataset("lambada_local", **kwargs)


def corpus_choice(**kwargs):
    return load_task_dataset("corpus_choice", **kwargs)


def corpus_cloze(**kwargs):
    return load_task_dataset("corpus_cloze", **kwargs)


def piqa_local(**kwargs):
    return load_task_dataset("piqa_local", **kwargs)


def arc_easy_local(**kwargs):
    return load_task_dataset("arc_easy_local", **kwargs)


def hellaswag_local(**kwargs):
    return load_task_dataset("hellaswag_local", **kwargs)


def openbookqa_local(**kwargs):
    return load_task_dataset("openbookqa_local", **kwargs)
