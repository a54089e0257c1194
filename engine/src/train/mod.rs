//! LoRA training as mlx-lm's `tuner.trainer.train` does it, plus exact
//! stop/resume: the trainer owns the epoch order, checkpoints the optimizer
//! and its own position, and derives every random draw from the seed.

pub mod checkpoint;
pub mod data_parallel;
pub mod loss;
pub mod optimizer;
pub mod order;
pub mod retention;
pub use loralab_types::schedule;
pub mod tensorboard;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use mlx_rs::{error::Exception, transforms::value_and_grad_with_argnums, Array};

use crate::batch::Batch;
use crate::config::{FineTuneType, TrainConfig};
use crate::distributed::World;
use crate::lora::{self, AdapterSettings, ADAPTER_WEIGHTS_FILE};
use crate::models::{full, Model, Pass};
use crate::protocol::Event;
use checkpoint::{RngState, TrainerState, Window, OPTIMIZER_FILE};
use data_parallel::{RankMeter, Share};
use loss::{batch_loss, evaluate, LossInputs};
use optimizer::{clip_grad_norm, Optimizer};
use retention::{EarlyStopState, SavedCheckpoint, Verdict};
use schedule::Schedule;

/// Batches from the data pipeline (already padded and length-sorted).
#[derive(Debug, Clone, Default)]
pub struct TrainData {
    pub train: Vec<Batch>,
    pub valid: Vec<Batch>,
    pub test: Vec<Batch>,
}

/// Steps the run will take: `epochs x batches` when `epochs` is set, else `iters`.
pub fn total_steps(cfg: &TrainConfig, train_batches: usize) -> usize {
    match cfg.epochs {
        Some(epochs) => epochs * train_batches,
        None => cfg.iters,
    }
}

fn check_config(cfg: &TrainConfig, data: &TrainData, world: &World) -> Result<()> {
    cfg.validate()?;
    if !cfg.batch_size.is_multiple_of(world.size()) {
        bail!(
            "batch_size {} does not divide among {} ranks: each rank takes an equal share of every batch",
            cfg.batch_size,
            world.size()
        );
    }
    if data.train.is_empty() {
        bail!("no training batches");
    }
    if cfg.test && data.test.is_empty() {
        bail!("`test` is set but there are no test batches");
    }
    if cfg.early_stopping.is_some() && data.valid.is_empty() {
        bail!("`early_stopping` is set but there are no validation batches to judge by");
    }
    Ok(())
}

/// Mean loss of one batch and the gradients with respect to the adapters
/// (with full fine-tuning, the trained blocks' weights).
/// `grad_checkpoint` recomputes each layer's activations in the backward
/// pass (same values, less memory).
pub fn loss_and_grads(
    model: &Model,
    params: &[Array],
    batch: &LossInputs,
    dropout_seed: Option<u64>,
    grad_checkpoint: bool,
) -> Result<(Array, Vec<Array>)> {
    let n = params.len();
    let argnums: Vec<i32> = (0..n as i32).collect();
    let full = full::first_trained_block(model).is_some();
    let f = |inputs: &[Array]| -> Result<Vec<Array>, Exception> {
        let loss = if full {
            // The blocks read their weights themselves: the loss is taken
            // on a copy holding the traced values, and no adapters.
            let pass = Pass {
                lora: &[],
                dropout_seed,
                grad_checkpoint,
            };
            full::with_weights(model, inputs).and_then(|m| batch_loss(&m, &pass, batch))
        } else {
            let pass = Pass {
                lora: inputs,
                dropout_seed,
                grad_checkpoint,
            };
            batch_loss(model, &pass, batch)
        };
        loss.map(|l| vec![l])
            .map_err(|e| Exception::custom(format!("{e:#}")))
    };
    let mut vg = value_and_grad_with_argnums(f, &argnums[..]);
    let (values, grads) = vg(params)?;
    let loss = values
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the loss function returned nothing"))?;
    Ok((loss, grads))
}

/// `loss_and_grads` traced once per batch shape and replayed as one MLX
/// graph, as mlx-lm compiles its step: MLX merges repeated work and fuses
/// chains of elementwise ops (the loss's softmax gradient, RMSNorm, RoPE,
/// SwiGLU) into single kernels. The arguments are the adapter parameters
/// followed by the batch's arrays (`LossInputs::arrays`); the results are the loss
/// followed by the gradients. Dropout draws fresh masks each step from a
/// seed, which a traced graph would freeze, so it is for dropout-free runs.
///
/// The function holds a shallow copy of `model` (MLX arrays share their
/// buffers), whose base weights enter the graph as constants; a full
/// fine-tune's trained blocks are rebuilt from the arguments.
pub fn compiled_loss_and_grads(
    model: &Model,
    grad_checkpoint: bool,
) -> impl FnMut(&[Array]) -> Result<Vec<Array>, Exception> {
    let mut model = model.clone();
    let n = model.lora_params().len();
    let full = full::first_trained_block(&model).is_some();
    let step = move |args: &[Array]| -> Result<Vec<Array>, Exception> {
        if full {
            // The step reads a full fine-tune's weights from its arguments:
            // the copy need not keep the starting values alive all run long.
            full::release_weights(&mut model).map_err(|e| Exception::custom(format!("{e:#}")))?;
        }
        let (params, batch) = args.split_at(n.min(args.len()));
        let batch = LossInputs::from_arrays(batch)?;
        let (loss, grads) = loss_and_grads(&model, params, &batch, None, grad_checkpoint)
            .map_err(|e| Exception::custom(format!("{e:#}")))?;
        let mut out = Vec::with_capacity(n + 1);
        out.push(loss);
        out.extend(grads);
        Ok(out)
    };
    mlx_rs::transforms::compile::compile(step, None)
}

/// `LORALAB_NO_COMPILE=1` trains without the compiled step (for comparing
/// and for ruling it out when a result looks wrong).
fn compile_disabled() -> bool {
    std::env::var("LORALAB_NO_COMPILE").is_ok_and(|v| v == "1")
}

/// Trains the model's adapters (attaching fresh ones first, unless adapters
/// are already attached). Writes mlx-lm's adapter files into `run_dir`.
/// With `resume`, continues from `run_dir`'s last checkpoint. Setting `stop`
/// makes the trainer checkpoint at the next step boundary and return.
/// `early_stopping` may end the run before its last step, on its best
/// checkpoint; `keep_checkpoints` deletes superseded numbered checkpoints
/// (see `retention`).
///
/// In a distributed group (`crate::distributed::world`), every rank runs
/// this with the same config and data: each computes its share of every
/// batch (`data_parallel`), and only rank 0 emits events and writes files.
pub fn train(
    cfg: &TrainConfig,
    model: &mut Model,
    data: &TrainData,
    run_dir: &Path,
    resume: bool,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(Event),
) -> Result<()> {
    Trainer::new(cfg, model, data, run_dir, resume, emit)?.run(stop)
}

/// Where the trainer's events go: rank 0's `emit`, and TensorBoard's
/// scalars when the run writes them. Every event of a run passes `send`.
struct Events<'a> {
    emit: &'a mut dyn FnMut(Event),
    board: Option<tensorboard::EventWriter>,
    leader: bool,
}

impl Events<'_> {
    fn send(&mut self, event: Event) {
        if !self.leader {
            return;
        }
        if let Some(writer) = &mut self.board {
            if let Err(error) = writer.observe(&event) {
                // The run goes on without its TensorBoard scalars.
                self.board = None;
                (self.emit)(Event::Log {
                    message: format!("TensorBoard: {error:#}; no more scalars are written"),
                });
            }
        }
        (self.emit)(event);
    }
}

/// The compiled step (see [`compiled_loss_and_grads`]).
type CompiledStep = Box<dyn FnMut(&[Array]) -> Result<Vec<Array>, Exception>>;

/// One run's training loop, as mlx-lm's `tuner.trainer.train` reads:
/// [`Trainer::step`] trains on one batch, [`Trainer::evaluate`] measures the
/// validation loss, [`Trainer::report`] sends the window's averages and
/// [`Trainer::checkpoint`] writes what a resume needs. Everything a resume
/// restores lives in `state` (`trainer_state.json`).
struct Trainer<'a> {
    cfg: &'a TrainConfig,
    model: &'a mut Model,
    data: &'a TrainData,
    run_dir: &'a Path,
    world: &'static World,
    events: Events<'a>,
    schedule: Schedule,
    opt: Optimizer,
    /// mlx-lm's names of the trained parameters, in `params` order.
    names: Vec<String>,
    params: Vec<Array>,
    /// The gradients of the steps of an unfinished accumulation.
    accumulated: Option<Vec<Array>>,
    /// `None` with dropout or `LORALAB_NO_COMPILE=1`.
    compiled: Option<CompiledStep>,
    state: TrainerState,
    total_steps: usize,
    /// The batch order of one epoch: (epoch, order).
    order: Option<(usize, Vec<usize>)>,
    /// Seconds spent in the steps of the report window so far (a resumed
    /// window's speed counts only the steps this process took).
    window_time: f64,
    /// This rank's own speed since the last report (for the `Ranks` event).
    rank_meter: RankMeter,
    /// The last evaluation (step, loss), for a checkpoint saved later at
    /// its step.
    last_eval: Option<(usize, f64)>,
    last_saved: Option<usize>,
}

impl<'a> Trainer<'a> {
    /// Attaches the trained parameters (unless the model carries them),
    /// resumes from `run_dir`'s checkpoint with `resume`, writes the adapter
    /// config and sends `Started`.
    fn new(
        cfg: &'a TrainConfig,
        model: &'a mut Model,
        data: &'a TrainData,
        run_dir: &'a Path,
        resume: bool,
        emit: &'a mut dyn FnMut(Event),
    ) -> Result<Self> {
        let world = crate::distributed::world();
        check_config(cfg, data, world)?;
        let board = if world.is_leader() && cfg.tensorboard {
            Some(tensorboard::EventWriter::create(
                &run_dir.join(tensorboard::TENSORBOARD_DIR),
            )?)
        } else {
            None
        };
        let events = Events {
            emit,
            board,
            leader: world.is_leader(),
        };
        let schedule = Schedule::from_config(cfg)?;
        std::fs::create_dir_all(run_dir)
            .map_err(|e| anyhow!("cannot create {}: {e}", run_dir.display()))?;
        if model.adapters().is_none() {
            if let Some(q) = cfg.quantize {
                model.quantize(q)?;
            }
            if cfg.fine_tune_type == FineTuneType::Full {
                full::attach(model, cfg.num_layers)?;
            } else {
                lora::attach(model, &AdapterSettings::from_train_config(cfg), cfg.seed)?;
            }
        }
        let names = model.adapters().expect("attached above").names.clone();
        let params = model.lora_params();
        let opt = Optimizer::new(cfg, &params)?;
        let batches = data.train.len();
        let mut trainer = Trainer {
            cfg,
            model,
            data,
            run_dir,
            world,
            events,
            schedule,
            opt,
            names,
            params,
            accumulated: None,
            compiled: None,
            state: TrainerState {
                step: 0,
                optimizer_step: 0,
                data_position: order::data_position(1, batches),
                train_batches: batches,
                rng: RngState {
                    seed: cfg.seed,
                    next_step: 1,
                },
                trained_tokens: 0,
                window: Window::default(),
                checkpoints: Some(Vec::new()),
                early_stopping: EarlyStopState::default(),
            },
            total_steps: total_steps(cfg, batches),
            order: None,
            window_time: 0.0,
            rank_meter: RankMeter::default(),
            last_eval: None,
            last_saved: None,
        };
        if resume {
            trainer.restore()?;
        } else if let Some(file) = &cfg.resume_adapter_file {
            lora::load_weights(trainer.model, Path::new(file))?;
            trainer.params = trainer.model.lora_params();
        }
        if world.is_leader() {
            lora::write_adapter_config(run_dir, cfg)?;
        }
        trainer.start(resume)?;
        // Built after the adapters are attached and loaded: the copy it
        // holds must carry the slots. Dropout needs per-step masks (see the
        // function); a full fine-tune has none (mlx-lm drops
        // `lora_parameters` for it).
        let dropout = cfg.fine_tune_type != FineTuneType::Full && cfg.lora_parameters.dropout > 0.0;
        if !dropout && !compile_disabled() {
            trainer.compiled = Some(Box::new(compiled_loss_and_grads(
                trainer.model,
                cfg.grad_checkpoint,
            )));
        }
        Ok(trainer)
    }

    /// Reads `run_dir`'s last checkpoint: the weights, the optimizer, the
    /// trainer's state and, when it stopped mid-accumulation, the
    /// gradients accumulated so far.
    fn restore(&mut self) -> Result<()> {
        let state = checkpoint::read_state(self.run_dir)?;
        if state.train_batches != self.state.train_batches {
            bail!(
                "cannot resume: the checkpoint was trained on {} batches, the data now has {}",
                state.train_batches,
                self.state.train_batches
            );
        }
        if state.rng.seed != self.cfg.seed {
            bail!(
                "cannot resume: the checkpoint used seed {}, the config says {}",
                state.rng.seed,
                self.cfg.seed
            );
        }
        self.state = state;
        lora::load_weights(self.model, &self.run_dir.join(ADAPTER_WEIGHTS_FILE))?;
        self.params = self.model.lora_params();
        let mut saved = checkpoint::load_arrays(&self.run_dir.join(OPTIMIZER_FILE))?;
        self.opt.import(&self.names, &mut saved)?;
        self.opt.step = self.state.optimizer_step;
        let grads: Vec<Option<Array>> = self
            .names
            .iter()
            .map(|n| saved.remove(&format!("accum.{n}")))
            .collect();
        if grads.iter().all(Option::is_some) && !grads.is_empty() {
            self.accumulated = Some(grads.into_iter().map(Option::unwrap).collect());
        }
        self.last_saved = Some(self.state.step);
        Ok(())
    }

    /// Sends `Started` (after a note on CUDA's first steps) and, on a
    /// resume, brings the numbered checkpoints on disk in line with the
    /// state's list.
    fn start(&mut self, resume: bool) -> Result<()> {
        if crate::device::is_gpu() && !cfg!(target_vendor = "apple") {
            // On an H100 the first 10 steps on a fresh machine took 94 s,
            // the same steps 0.4 s once the kernels were cached: say why it
            // waits.
            self.events.send(Event::Log {
                message: "MLX compiles its CUDA kernels during the first steps on a machine \
                          (a minute or two); later runs reuse them"
                    .into(),
            });
        }
        self.events.send(Event::Started {
            total_steps: self.total_steps,
            start_step: self.state.step,
            trainable_parameters: lora::trainable_parameters(self.model),
            total_parameters: self.model.total_parameters(),
            device: crate::device::current().description,
            compute_dtype: format!("{:?}", self.model.compute_dtype).to_lowercase(),
        });
        if let (true, Some(_), Some(list)) = (
            resume,
            self.cfg.keep_checkpoints,
            &mut self.state.checkpoints,
        ) {
            retention::reconcile(self.run_dir, list, &mut |event| self.events.send(event))?;
        }
        Ok(())
    }

    /// Trains from the state's step to the last, then ends the run
    /// ([`Trainer::finish`]); a stop checkpoints and returns at a step
    /// boundary.
    fn run(mut self, stop: &AtomicBool) -> Result<()> {
        // A run that stopped early and then failed (e.g. in its test
        // evaluation) only has its ending left to do.
        let last = if self.state.early_stopping.stopped_at.is_some() {
            self.state.step
        } else {
            self.total_steps
        };
        for it in (self.state.step + 1)..=last {
            if self.world.any(stop.load(Ordering::SeqCst))? {
                self.checkpoint(self.measured_at(self.state.step))?;
                self.events.send(Event::Stopped {
                    step: self.state.step,
                });
                return Ok(());
            }
            if it == 1 {
                let val_loss = self.evaluate(0)?;
                // Early stopping's best may be the untrained adapter: then
                // it must be a checkpoint too.
                if self.judge(0, val_loss).best {
                    self.checkpoint(val_loss)?;
                }
            }
            self.step(it)?;
            if it % self.cfg.steps_per_report == 0 || it == self.total_steps {
                self.report(it)?;
            }
            // After the update, so the loss of step `it` is that of the
            // weights a checkpoint at `it` holds (mlx-lm measures before
            // it, which pins a checkpoint's number on the previous step's
            // weights).
            let val_loss = if it % self.cfg.steps_per_eval == 0 || it == self.total_steps {
                self.evaluate(it)?
            } else {
                None
            };
            // The best weights early stopping may end on are always saved.
            let verdict = self.judge(it, val_loss);
            if verdict.stop {
                self.state.early_stopping.stopped_at = Some(it);
            }
            if it % self.cfg.save_every == 0 || verdict.best || verdict.stop {
                self.checkpoint(val_loss)?;
            }
            if verdict.stop {
                break;
            }
        }
        self.finish()
    }

    /// Step `it` (1-based): its batch (this rank's share) through the loss
    /// and gradients, summed over the ranks, accumulated, and every
    /// `grad_accumulation_steps` steps an optimizer update.
    fn step(&mut self, it: usize) -> Result<()> {
        let tic = Instant::now();
        let cfg = self.cfg;
        let batches = self.state.train_batches;
        let position = order::data_position(it, batches);
        let order = match &mut self.order {
            Some((epoch, order)) if *epoch == position.epoch => order,
            slot => {
                let order = order::epoch_order(cfg.seed, position.epoch, batches);
                &mut slot.insert((position.epoch, order)).1
            }
        };
        let share = Share::of(&self.data.train[order[position.index]], self.world)?;
        let (loss, grads) = match (&share.inputs, &mut self.compiled) {
            (None, _) => Share::nothing(&self.params)?,
            (Some(batch), Some(step)) => {
                let mut args = self.params.clone();
                args.extend(batch.arrays());
                let mut out = step(&args)?.into_iter();
                let loss = out
                    .next()
                    .ok_or_else(|| anyhow!("the compiled step returned nothing"))?;
                (loss, out.collect())
            }
            (Some(batch), None) => {
                let dropout_seed = Some(order::dropout_seed(cfg.seed, it));
                loss_and_grads(
                    self.model,
                    &self.params,
                    batch,
                    dropout_seed,
                    cfg.grad_checkpoint,
                )?
            }
        };
        // Summed over the ranks at every step, accumulation included, so
        // the accumulated gradients a checkpoint holds are the same on all.
        let (loss, mut grads) = share.combine(self.world, loss, grads)?;
        if let Some(previous) = self.accumulated.take() {
            grads = grads
                .iter()
                .zip(&previous)
                .map(|(g, p)| g.add(p))
                .collect::<Result<_, _>>()?;
        }
        let accum = cfg.grad_accumulation_steps;
        if it.is_multiple_of(accum) {
            if accum > 1 {
                let inv = Array::from_f32(1.0 / accum as f32);
                grads = grads
                    .iter()
                    .map(|g| g.multiply(&inv))
                    .collect::<Result<_, _>>()?;
            }
            if let Some(max_norm) = cfg.grad_clip {
                clip_grad_norm(&mut grads, max_norm)?;
            }
            let lr = self.schedule.at(self.opt.step);
            let updated = self.opt.update(&self.params, &grads, lr)?;
            self.params = self.model.set_trained(updated)?;
        } else {
            self.accumulated = Some(grads);
        }
        let mut to_eval: Vec<&Array> = vec![&loss];
        to_eval.extend(self.params.iter());
        to_eval.extend(self.opt.state_arrays());
        if let Some(grads) = &self.accumulated {
            to_eval.extend(grads.iter());
        }
        mlx_rs::transforms::eval(to_eval)?;
        let loss_value = f64::from(loss.try_item_exact::<f32>()?);
        let step_time = tic.elapsed().as_secs_f64();
        self.window_time += step_time;
        self.rank_meter.add_step(&share, step_time);
        let window = &mut self.state.window;
        window.loss_sum += loss_value;
        window.tokens += share.batch_tokens as u64;
        window.steps += 1;

        self.state.step = it;
        self.state.optimizer_step = self.opt.step;
        self.state.data_position = order::data_position(it + 1, batches);
        self.state.rng.next_step = it + 1;
        Ok(())
    }

    /// The validation loss of the current weights, sent as step `step`'s
    /// `Eval` (`None` without validation batches).
    fn evaluate(&mut self, step: usize) -> Result<Option<f64>> {
        if self.data.valid.is_empty() {
            return Ok(None);
        }
        let tic = Instant::now();
        let val_loss = evaluate(self.model, &self.data.valid, self.cfg.val_batches)?;
        self.events.send(Event::Eval {
            step,
            val_loss,
            val_time_sec: tic.elapsed().as_secs_f64(),
        });
        self.last_eval = Some((step, val_loss));
        Ok(Some(val_loss))
    }

    /// The validation loss measured at `step`, if its weights were evaluated.
    fn measured_at(&self, step: usize) -> Option<f64> {
        self.last_eval
            .and_then(|(at, loss)| (at == step).then_some(loss))
    }

    /// What an evaluation means for early stopping (nothing when it is off).
    fn judge(&mut self, step: usize, val_loss: Option<f64>) -> Verdict {
        match (self.cfg.early_stopping, val_loss) {
            (Some(early), Some(loss)) => {
                self.state
                    .early_stopping
                    .record(step, loss, early.patience, early.min_delta)
            }
            _ => Verdict::default(),
        }
    }

    /// Sends the report window's averages as step `it`'s `Report`, and
    /// with several ranks each rank's figures (`Ranks`: a collective, so
    /// every rank reports at the same steps), and opens a new window.
    fn report(&mut self, it: usize) -> Result<()> {
        let window = std::mem::take(&mut self.state.window);
        let secs = std::mem::take(&mut self.window_time).max(1e-9);
        self.state.trained_tokens += window.tokens;
        let batches = self.state.train_batches;
        self.events.send(Event::Report {
            step: it,
            epoch: it as f64 / batches as f64,
            train_loss: window.loss_sum / window.steps as f64,
            learning_rate: self.schedule.at(self.opt.step.saturating_sub(1)),
            it_per_sec: window.steps as f64 / secs,
            tokens_per_sec: window.tokens as f64 / secs,
            trained_tokens: self.state.trained_tokens,
            peak_memory_gb: mlx_rs::memory::peak_memory().unwrap_or(0) as f64 / 1e9,
        });
        if let Some(figures) = self.rank_meter.report(self.world, it)? {
            self.events.send(figures);
        }
        Ok(())
    }

    /// Writes the current step's checkpoint (rank 0 only): the weights as
    /// `adapters.safetensors` and numbered, the optimizer with any
    /// accumulated gradients, and the state, then deletes the numbered
    /// checkpoints `keep_checkpoints` no longer keeps. `val_loss`: the
    /// evaluation of these weights, when one ran.
    fn checkpoint(&mut self, val_loss: Option<f64>) -> Result<()> {
        self.last_saved = Some(self.state.step);
        if !self.events.leader {
            return Ok(());
        }
        let run_dir = self.run_dir;
        let names = &self.names;
        let adapters: Vec<(String, Array)> = names
            .iter()
            .cloned()
            .zip(self.model.lora_params())
            .collect();
        checkpoint::save_arrays(&run_dir.join(ADAPTER_WEIGHTS_FILE), &adapters)?;
        let numbered = retention::numbered_file(run_dir, self.state.step);
        checkpoint::save_arrays(&numbered, &adapters)?;
        let mut opt_state = self.opt.export(names);
        if let Some(grads) = &self.accumulated {
            opt_state.extend(
                names
                    .iter()
                    .map(|n| format!("accum.{n}"))
                    .zip(grads.iter().cloned()),
            );
        }
        checkpoint::save_arrays(&run_dir.join(OPTIMIZER_FILE), &opt_state)?;
        let mut superseded = Vec::new();
        let step = self.state.step;
        if let Some(list) = &mut self.state.checkpoints {
            retention::record(list, SavedCheckpoint { step, val_loss });
            if let Some(keep) = self.cfg.keep_checkpoints {
                superseded = retention::prune(list, keep);
            }
        }
        // The state lists what stays before anything is deleted, so a
        // resume after a kill in between deletes the rest.
        checkpoint::write_state(run_dir, &self.state)?;
        self.events.send(Event::Checkpoint {
            step,
            path: numbered.display().to_string(),
        });
        for old in superseded {
            retention::remove(run_dir, old.step, &mut |event| self.events.send(event))?;
        }
        Ok(())
    }

    /// The end of a run: the last step's checkpoint, after early stopping
    /// the best checkpoint made the adapter, the test split's loss, `Done`.
    fn finish(mut self) -> Result<()> {
        if self.last_saved != Some(self.state.step) {
            self.checkpoint(self.measured_at(self.state.step))?;
        }
        let cfg = self.cfg;
        let reason = match (
            self.state.early_stopping.stopped_at,
            self.state.early_stopping.best,
        ) {
            (Some(step), Some(best)) => {
                // The adapter is the best checkpoint's weights: the test
                // split measures them, and `adapters.safetensors` becomes a
                // copy.
                let best_file = retention::numbered_file(self.run_dir, best.step);
                lora::load_weights(self.model, &best_file)?;
                let patience = cfg.early_stopping.map_or(0, |early| early.patience);
                Some((best_file, retention::early_stop_reason(step, patience)))
            }
            _ => None,
        };
        let (test_loss, test_perplexity) = if cfg.test {
            let loss = evaluate(self.model, &self.data.test, cfg.test_batches)?;
            (Some(loss), Some(loss.exp()))
        } else {
            (None, None)
        };
        if let (true, Some((best_file, _))) = (self.events.leader, &reason) {
            checkpoint::copy_file(best_file, &self.run_dir.join(ADAPTER_WEIGHTS_FILE))?;
        }
        self.events.send(Event::Done {
            step: self.state.step,
            test_loss,
            test_perplexity,
            reason: reason.map(|(_, reason)| reason),
        });
        Ok(())
    }
}
