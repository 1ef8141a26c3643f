"""`custom_dataset` loaders for the task YAMLs beside this file (lm-eval imports this file by path).

lm-eval calls them with the task metadata and dataset_kwargs as keywords (e.g. data_files=...).
"""
from perfmamba.evaluation.local_tasks import load_task_dataset


def _loader(task: str):
    def load(**kwargs):
        return load_task_dataset(task, **kwargs)
    return load


lambada_local = _loader("lambada_local")
corpus_choice = _loader("corpus_choice")
corpus_cloze = _loader("corpus_cloze")
piqa_local = _loader("piqa_local")
arc_easy_local = _loader("arc_easy_local")
hellaswag_local = _loader("hellaswag_local")
openbookqa_local = _loader("openbookqa_local")
