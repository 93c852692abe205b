"""Code written the way the original course (fastai/course22p2, lesson 09) writes it runs against miniai.learner.

Only the data differ (small synthetic tensors instead of the hub's Fashion-MNIST).

    python -m pytest -q -p no:cacheprovider tests/test_learner_course.py
"""
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import torch
from torch import nn
import torch.nn.functional as F
from torcheval.metrics import MulticlassAccuracy
from miniai.datasets import DataLoaders, TensorLoader
from miniai.learner import *      # as the course does


def get_dls():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(512, 20, generator=g), torch.randint(0, 4, (512,), generator=g)
    return DataLoaders(TensorLoader(x, y, 64, shuffle=True, seed=0, mean=None), TensorLoader(x[:128], y[:128], 128, mean=None))

def get_model(): return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))


def test_names_from_star_import():
    assert def_device.type in ('cpu', 'cuda', 'mps')
    assert to_device(torch.ones(2)).device.type == def_device.type
    assert to_cpu([torch.ones(1, dtype=torch.float16)])[0].dtype == torch.float32


def test_run_cbs_and_a_counting_callback(capsys):
    class CompletionCB(Callback):
        def before_fit(self, learn): self.count = 0
        def after_batch(self, learn): self.count += 1
        def after_fit(self, learn): print(f'Completed {self.count} batches')
    cbs = [CompletionCB()]
    run_cbs(cbs, 'before_fit'); run_cbs(cbs, 'after_batch'); run_cbs(cbs, 'after_fit')
    assert 'Completed 1 batches' in capsys.readouterr().out
    learn = Learner(get_model(), get_dls(), F.cross_entropy, lr=0.2, cbs=[TrainCB(), CompletionCB(), SingleBatchCB()])
    learn.fit(1)
    assert 'Completed' not in capsys.readouterr().out    # SingleBatchCB cancels before after_fit, as in the course


def test_flexible_learner_with_the_usual_callbacks():
    metrics = MetricsCB(accuracy=MulticlassAccuracy())
    cbs = [TrainCB(), DeviceCB(), metrics, ProgressCB(plot=True)]
    learn = Learner(get_model(), get_dls(), F.cross_entropy, lr=0.2, cbs=cbs)
    learn.fit(2)
    assert float(learn.metrics.all_metrics['loss'].compute()) > 0      # what a course ProgressCB reads


def test_momentum_learner_without_lr_and_lr_finder_through_fit():
    cbs = [DeviceCB()]
    learn = MomentumLearner(get_model(), get_dls(), F.cross_entropy, cbs=cbs)
    learn.fit(1)
    n = len(plt.get_fignums())
    learn.fit(3, lr=1e-4, cbs=LRFinderCB())       # plots, as in the course
    assert len(plt.get_fignums()) == n + 1
    MomentumLearner(get_model(), get_dls(), F.cross_entropy, cbs=cbs).lr_find()
    assert len(plt.get_fignums()) == n + 2


def test_a_students_learner_subclass_with_with_cbs():
    class MyLearner(TrainLearner):
        @with_cbs('batch')
        def _one_batch(self):     # the course's loop, written by hand
            self.predict(); self.callback('after_predict')
            self.get_loss(); self.callback('after_loss')
            if self.training:
                self.backward(); self.callback('after_backward')
                self.step(); self.callback('after_step')
                self.zero_grad()
    learn = MyLearner(get_model(), get_dls(), F.cross_entropy, lr=0.2, cbs=[MetricsCB(log=False)])
    learn.fit(2)
    assert learn.history[-1]['loss'] < learn.history[0]['loss']


def test_course_callback_calling_inner_steps_on_a_plain_learner():
    class Twice(Callback):   # a course-style callback that calls the inner steps itself
        def after_step(self, learn): learn.zero_grad()
    learn = Learner(get_model(), get_dls(), F.cross_entropy, lr=0.2, cbs=[TrainCB(), Twice()])
    learn.fit(1)
