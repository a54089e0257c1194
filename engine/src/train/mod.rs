//! LoRA training as mlx-lm's `tuner.trainer.train` does it, plus exact
//! stop/resume: the trainer owns the epoch order, checkpoints the optimizer
//! and its own position, and derives every random draw from the seed.

pub mod checkpoint;
pub mod data_parallel;
pub mod full;
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
use crate::models::{Model, Pass};
use crate::protocol::Event;
use checkpoint::{DataPosition, RngState, TrainerState, Window, OPTIMIZER_FILE};
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
    let world = crate::distributed::world();
    check_config(cfg, data, world)?;
    let leader = world.is_leader();
    let mut board = if leader && cfg.tensorboard {
        Some(tensorboard::EventWriter::create(
            &run_dir.join(tensorboard::TENSORBOARD_DIR),
        )?)
    } else {
        None
    };
    let emit = &mut |event: Event| {
        if !leader {
            return;
        }
        if let Some(writer) = &mut board {
            if let Err(error) = writer.observe(&event) {
                // The run goes on without its TensorBoard scalars.
                board = None;
                emit(Event::Log {
                    message: format!("TensorBoard: {error:#}; no more scalars are written"),
                });
            }
        }
        emit(event);
    };
    let schedule = Schedule::from_config(cfg)?;
    std::fs::create_dir_all(run_dir)
        .map_err(|e| anyhow!("cannot create {}: {e}", run_dir.display()))?;
    if model.lora.is_none() {
        if let Some(q) = cfg.quantize {
            model.quantize(q)?;
        }
        if cfg.fine_tune_type == FineTuneType::Full {
            full::attach(model, cfg.num_layers)?;
        } else {
            lora::attach(model, &AdapterSettings::from_train_config(cfg), cfg.seed)?;
        }
    }
    let names = model.lora.as_ref().expect("attached above").names.clone();
    let mut params = model.lora_params();
    let mut opt = Optimizer::new(cfg, &params)?;
    let batches = data.train.len();
    let total = total_steps(cfg, batches);

    let mut state = TrainerState {
        step: 0,
        optimizer_step: 0,
        data_position: DataPosition { epoch: 0, index: 0 },
        train_batches: batches,
        rng: RngState {
            seed: cfg.seed,
            next_step: 1,
        },
        trained_tokens: 0,
        window: Window::default(),
        checkpoints: Some(Vec::new()),
        early_stopping: EarlyStopState::default(),
    };
    let mut accumulated: Option<Vec<Array>> = None;
    if resume {
        state = checkpoint::read_state(run_dir)?;
        if state.train_batches != batches {
            bail!(
                "cannot resume: the checkpoint was trained on {} batches, the data now has {batches}",
                state.train_batches
            );
        }
        if state.rng.seed != cfg.seed {
            bail!(
                "cannot resume: the checkpoint used seed {}, the config says {}",
                state.rng.seed,
                cfg.seed
            );
        }
        lora::load_weights(model, &run_dir.join(ADAPTER_WEIGHTS_FILE))?;
        params = model.lora_params();
        let mut saved = checkpoint::load_arrays(&run_dir.join(OPTIMIZER_FILE))?;
        opt.import(&names, &mut saved)?;
        opt.step = state.optimizer_step;
        let grads: Vec<Option<Array>> = names
            .iter()
            .map(|n| saved.remove(&format!("accum.{n}")))
            .collect();
        if grads.iter().all(Option::is_some) && !grads.is_empty() {
            accumulated = Some(grads.into_iter().map(Option::unwrap).collect());
        }
    } else if let Some(file) = &cfg.resume_adapter_file {
        lora::load_weights(model, Path::new(file))?;
        params = model.lora_params();
    }
    if leader {
        lora::write_adapter_config(run_dir, cfg)?;
    }
    if crate::device::is_gpu() && !cfg!(target_vendor = "apple") {
        // On an H100 the first 10 steps on a fresh machine took 94 s, the
        // same steps 0.4 s once the kernels were cached: say why it waits.
        emit(Event::Log {
            message: "MLX compiles its CUDA kernels during the first steps on a machine \
                      (a minute or two); later runs reuse them"
                .into(),
        });
    }
    emit(Event::Started {
        total_steps: total,
        start_step: state.step,
        trainable_parameters: lora::trainable_parameters(model),
        total_parameters: model.total_parameters(),
        device: crate::device::current().description,
        compute_dtype: format!("{:?}", model.compute_dtype).to_lowercase(),
    });
    if let (true, Some(_), Some(list)) = (resume, cfg.keep_checkpoints, &mut state.checkpoints) {
        retention::reconcile(run_dir, list, emit)?;
    }

    let accum = cfg.grad_accumulation_steps;
    // Built after the adapters are attached and loaded: the copy it holds
    // must carry the slots. Dropout needs per-step masks (see the function);
    // a full fine-tune has none (mlx-lm drops `lora_parameters` for it).
    let dropout = cfg.fine_tune_type != FineTuneType::Full && cfg.lora_parameters.dropout > 0.0;
    let mut compiled = (!dropout && !compile_disabled())
        .then(|| compiled_loss_and_grads(model, cfg.grad_checkpoint));
    let mut order_epoch = usize::MAX;
    let mut order = Vec::new();
    let mut window_time = 0.0f64;
    let mut window = state.window;
    let mut rank_meter = RankMeter::default();

    // `val_loss`: the evaluation of this step's weights, when one ran.
    let save = |model: &Model,
                opt: &Optimizer,
                accumulated: &Option<Vec<Array>>,
                state: &mut TrainerState,
                val_loss: Option<f64>,
                emit: &mut dyn FnMut(Event)|
     -> Result<()> {
        if !leader {
            return Ok(());
        }
        let adapters: Vec<(String, Array)> =
            names.iter().cloned().zip(model.lora_params()).collect();
        checkpoint::save_arrays(&run_dir.join(ADAPTER_WEIGHTS_FILE), &adapters)?;
        let numbered = retention::numbered_file(run_dir, state.step);
        checkpoint::save_arrays(&numbered, &adapters)?;
        let mut opt_state = opt.export(&names);
        if let Some(grads) = accumulated {
            opt_state.extend(
                names
                    .iter()
                    .map(|n| format!("accum.{n}"))
                    .zip(grads.iter().cloned()),
            );
        }
        checkpoint::save_arrays(&run_dir.join(OPTIMIZER_FILE), &opt_state)?;
        let mut superseded = Vec::new();
        if let Some(list) = &mut state.checkpoints {
            let step = state.step;
            retention::record(list, SavedCheckpoint { step, val_loss });
            if let Some(keep) = cfg.keep_checkpoints {
                superseded = retention::prune(list, keep);
            }
        }
        // The state lists what stays before anything is deleted, so a
        // resume after a kill in between deletes the rest.
        checkpoint::write_state(run_dir, state)?;
        emit(Event::Checkpoint {
            step: state.step,
            path: numbered.display().to_string(),
        });
        for old in superseded {
            retention::remove(run_dir, old.step, emit)?;
        }
        Ok(())
    };

    let validate =
        |model: &Model, step: usize, emit: &mut dyn FnMut(Event)| -> Result<Option<f64>> {
            if data.valid.is_empty() {
                return Ok(None);
            }
            let tic = Instant::now();
            let val_loss = evaluate(model, &data.valid, cfg.val_batches)?;
            emit(Event::Eval {
                step,
                val_loss,
                val_time_sec: tic.elapsed().as_secs_f64(),
            });
            Ok(Some(val_loss))
        };
    // What an evaluation means for early stopping (nothing when it is off).
    let judge = |state: &mut TrainerState, step: usize, val_loss: Option<f64>| -> Verdict {
        match (cfg.early_stopping, val_loss) {
            (Some(early), Some(loss)) => {
                state
                    .early_stopping
                    .record(step, loss, early.patience, early.min_delta)
            }
            _ => Verdict::default(),
        }
    };

    // A run that stopped early and then failed (e.g. in its test
    // evaluation) only has its ending left to do.
    let last = if state.early_stopping.stopped_at.is_some() {
        state.step
    } else {
        total
    };
    let mut last_saved = resume.then_some(state.step);
    // The last evaluation, for a checkpoint saved later at its step.
    let mut last_eval: Option<(usize, f64)> = None;
    let measured = |last_eval: Option<(usize, f64)>, step: usize| {
        last_eval.and_then(|(at, loss)| (at == step).then_some(loss))
    };
    for it in (state.step + 1)..=last {
        if world.any(stop.load(Ordering::SeqCst))? {
            state.window = window;
            let val_loss = measured(last_eval, state.step);
            save(model, &opt, &accumulated, &mut state, val_loss, emit)?;
            emit(Event::Stopped { step: state.step });
            return Ok(());
        }
        if it == 1 {
            let val_loss = validate(model, 0, emit)?;
            last_eval = val_loss.map(|loss| (0, loss));
            // Early stopping's best may be the untrained adapter: then it
            // must be a checkpoint too.
            if judge(&mut state, 0, val_loss).best {
                state.window = window;
                save(model, &opt, &accumulated, &mut state, val_loss, emit)?;
                last_saved = Some(0);
            }
        }

        let tic = Instant::now();
        let (epoch, index) = order::position(it, batches);
        if epoch != order_epoch {
            order = order::epoch_order(cfg.seed, epoch, batches);
            order_epoch = epoch;
        }
        let share = Share::of(&data.train[order[index]], world)?;
        let (loss, grads) = match (&share.inputs, &mut compiled) {
            (None, _) => Share::nothing(&params)?,
            (Some(batch), Some(step)) => {
                let mut args = params.clone();
                args.extend(batch.arrays());
                let mut out = step(&args)?.into_iter();
                let loss = out
                    .next()
                    .ok_or_else(|| anyhow!("the compiled step returned nothing"))?;
                (loss, out.collect())
            }
            (Some(batch), None) => {
                let dropout_seed = Some(order::dropout_seed(cfg.seed, it));
                loss_and_grads(model, &params, batch, dropout_seed, cfg.grad_checkpoint)?
            }
        };
        // Summed over the ranks at every step, accumulation included, so
        // the accumulated gradients a checkpoint holds are the same on all.
        let (loss, mut grads) = share.combine(world, loss, grads)?;
        if let Some(previous) = accumulated.take() {
            grads = grads
                .iter()
                .zip(&previous)
                .map(|(g, p)| g.add(p))
                .collect::<Result<_, _>>()?;
        }
        if it % accum == 0 {
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
            let lr = schedule.at(opt.step);
            let updated = opt.update(&params, &grads, lr)?;
            params = lora::set_trained(model, updated)?;
        } else {
            accumulated = Some(grads);
        }
        let mut to_eval: Vec<&Array> = vec![&loss];
        to_eval.extend(params.iter());
        to_eval.extend(opt.state_arrays());
        if let Some(grads) = &accumulated {
            to_eval.extend(grads.iter());
        }
        mlx_rs::transforms::eval(to_eval)?;
        let loss_value = f64::from(loss.try_item_exact::<f32>()?);
        let step_time = tic.elapsed().as_secs_f64();
        window_time += step_time;
        rank_meter.add_step(&share, step_time);
        window.loss_sum += loss_value;
        window.tokens += share.batch_tokens as u64;
        window.steps += 1;

        state.step = it;
        state.optimizer_step = opt.step;
        let (next_epoch, next_index) = (it / batches, it % batches);
        state.data_position = DataPosition {
            epoch: next_epoch,
            index: next_index,
        };
        state.rng.next_step = it + 1;

        if it % cfg.steps_per_report == 0 || it == total {
            state.trained_tokens += window.tokens;
            let secs = window_time.max(1e-9);
            emit(Event::Report {
                step: it,
                epoch: it as f64 / batches as f64,
                train_loss: window.loss_sum / window.steps as f64,
                learning_rate: schedule.at(opt.step.saturating_sub(1)),
                it_per_sec: window.steps as f64 / secs,
                tokens_per_sec: window.tokens as f64 / secs,
                trained_tokens: state.trained_tokens,
                peak_memory_gb: mlx_rs::memory::peak_memory().unwrap_or(0) as f64 / 1e9,
            });
            if let Some(figures) = rank_meter.report(world, it)? {
                emit(figures);
            }
            window = Window::default();
            window_time = 0.0;
        }
        // After the update, so the loss of step `it` is that of the weights a
        // checkpoint at `it` holds (mlx-lm measures before it, which pins a
        // checkpoint's number on the previous step's weights).
        let val_loss = if it % cfg.steps_per_eval == 0 || it == total {
            validate(model, it, emit)?
        } else {
            None
        };
        if let Some(loss) = val_loss {
            last_eval = Some((it, loss));
        }
        // The best weights early stopping may end on are always saved.
        let verdict = judge(&mut state, it, val_loss);
        if verdict.stop {
            state.early_stopping.stopped_at = Some(it);
        }
        if it % cfg.save_every == 0 || verdict.best || verdict.stop {
            state.window = window;
            save(model, &opt, &accumulated, &mut state, val_loss, emit)?;
            last_saved = Some(it);
        }
        if verdict.stop {
            break;
        }
    }

    state.window = window;
    if last_saved != Some(state.step) {
        let val_loss = measured(last_eval, state.step);
        save(model, &opt, &accumulated, &mut state, val_loss, emit)?;
    }
    let reason = match (state.early_stopping.stopped_at, state.early_stopping.best) {
        (Some(step), Some(best)) => {
            // The adapter is the best checkpoint's weights: the test split
            // measures them, and `adapters.safetensors` becomes a copy.
            let best_file = retention::numbered_file(run_dir, best.step);
            lora::load_weights(model, &best_file)?;
            let patience = cfg.early_stopping.map_or(0, |early| early.patience);
            Some((best_file, retention::early_stop_reason(step, patience)))
        }
        _ => None,
    };
    let (test_loss, test_perplexity) = if cfg.test {
        let loss = evaluate(model, &data.test, cfg.test_batches)?;
        (Some(loss), Some(loss.exp()))
    } else {
        (None, None)
    };
    if let (true, Some((best_file, _))) = (leader, &reason) {
        checkpoint::copy_file(best_file, &run_dir.join(ADAPTER_WEIGHTS_FILE))?;
    }
    emit(Event::Done {
        step: state.step,
        test_loss,
        test_perplexity,
        reason: reason.map(|(_, reason)| reason),
    });
    Ok(())
}
