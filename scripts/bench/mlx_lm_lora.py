"""`mlx_lm lora ARGS...` with each training report also printed as the
report line `loralab train` prints (and mlx-lm printed before its table UI),
peak memory included, so one parser reads both sides of a bench."""

import sys

import mlx_lm.lora as lora
from mlx_lm.tuner.callbacks import TrainingCallback


class ReportLines(TrainingCallback):
    def on_train_loss_report(self, info):
        print(
            f"Iter {info['iteration']}: Train loss {info['train_loss']:.3f}, "
            f"Learning Rate {info['learning_rate']:.3e}, "
            f"It/sec {info['iterations_per_second']:.3f}, "
            f"Tokens/sec {info['tokens_per_second']:.3f}, "
            f"Trained Tokens {info['trained_tokens']}, "
            f"Peak mem {info['peak_memory']:.3f} GB",
            flush=True,
        )


# `lora.run` makes its callback from `report_to` (none by default).
lora.get_reporting_callbacks = lambda *args, **kwargs: ReportLines()
sys.argv = ["mlx_lm.lora", *sys.argv[1:]]
lora.main()
