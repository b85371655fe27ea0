#!/usr/bin/env bash
# The one prepared device check of issue 15 (docs/gpu.md), for a lent GPU machine (an NVIDIA H200 here, offline),
# run from the repository root over a copy of the working tree. Everything it measures goes under $OUT as JSON and
# one markdown summary; it stops each step at the time left so the whole check ends within 8 minutes.
#
#   bench/gpu-check.sh            the check (needs an NVIDIA GPU; nvcc to build the kernels, else a carried
#                                 native/build/cuda/cuda-check)
#   bench/gpu-check.sh --dry-run  everything that runs without a GPU, on small inputs: the build with --cuda, the
#                                 harness (which says SKIPPED: no device), the test file, a real-shape fixture
#                                 (1 layer), the node-llama-cpp speed rows on it, and the summary
#
# Steps: 1 environment (GPU, driver, whether node-llama-cpp finds CUDA); 2 build (addon, bundles, CUDA kernels for
# GPU_CHECK_ARCHS, default 90); 3 the CUDA kernels against the CPU kernels and their decode-attention timings at
# 32K/128K (native/build/cuda/cuda-check --bench) and test/native/cuda.test.mjs; 4 the target fixture:
# Qwen2.5-Coder-7B's shape at Q4_K_M with GPU_CHECK_LAYERS of its 28 layers (default 2: every layer has the real
# shape; whole-model speeds scale with the layer count); 5 node-llama-cpp's CUDA build on it at 32K and 128K (f16 with
# flash attention off and on, q4_0 with it on): the baseline the issue's speed goals compare with; 6 the 0.5B shape
# (Q8_0), SpecKV's draft, if time is left (nothing measured uses it until the CUDA engine exists); 7 the summary.
#
# Not measured, because it does not exist yet (docs/gpu.md): the native engine's forward pass on CUDA, hence parity of
# a CUDA engine with the CPU engine and node-llama-cpp, its decode speed, time to first token and peak device
# memory. The summary says so instead of leaving the rows out silently.
set -uo pipefail

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/.gpu/out}
mkdir -p "$OUT"
# 8 minutes, less a margin for copying $OUT back (the dry run on a small shared CPU machine gets longer)
BUDGET=${GPU_CHECK_BUDGET_S:-$((DRY ? 1200 : 465))}
ARCHS=${GPU_CHECK_ARCHS:-90}
LAYERS=${GPU_CHECK_LAYERS:-2}  # of the 7B's 28: all of them (about 15 GB of F16 written by one JS thread) do not fit the budget
THREADS=${GPU_CHECK_THREADS:-$(nproc)}
START=$SECONDS
LOG=$OUT/gpu-check.log
: >"$LOG"
STATUS=$OUT/steps.tsv
printf 'step\tstatus\tseconds\tdetail\n' >"$STATUS"

left() { echo $((BUDGET - (SECONDS - START))); }
say() { echo "gpu-check: $*" | tee -a "$LOG" >&2; }
# step NAME MIN_SECONDS CMD...: runs CMD with the time left (skipped when less than MIN_SECONDS remain), logs it
step() {
	local name=$1 min=$2
	shift 2
	local t0=$SECONDS rem
	rem=$(left)
	if ((rem < min)); then
		say "$name: SKIPPED (${rem}s left, needs ${min}s)"
		printf '%s\tskipped\t0\tout of time (%ss left)\n' "$name" "$rem" >>"$STATUS"
		return 124
	fi
	say "$name: $*"
	timeout --kill-after=5 "$rem" "$@" >>"$LOG" 2>&1
	local rc=$?
	local st=ok
	((rc != 0)) && st="failed($rc)"
	((rc == 124 || rc == 137)) && st=timeout
	((rc == 77)) && st="skipped(no CUDA device)"
	printf '%s\t%s\t%s\t%s\n' "$name" "$st" $((SECONDS - t0)) "$(printf '%s' "$*" | tr '\n\t' '  ' | cut -c1-300)" >>"$STATUS"
	say "$name: $st in $((SECONDS - t0))s"
	return $rc
}

# ---- 1. environment ------------------------------------------------------------------------------------------------
{
	echo "date: $(date -u +%FT%TZ)"
	echo "dry run: $DRY"
	echo "node: $(node --version)"
	echo "cpus: $(nproc)"
	if command -v nvidia-smi >/dev/null; then
		nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
	else
		echo "gpu: nvidia-smi not found"
	fi
	if command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; then
		echo "nvcc: $( (command -v nvcc >/dev/null && nvcc --version || /usr/local/cuda/bin/nvcc --version) | grep -o 'release [0-9.]*')"
	else
		echo "nvcc: not found"
	fi
	lib=node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda/libggml-cuda.so
	if [[ -f $lib ]]; then
		missing=$(LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}" ldd "$lib" 2>&1 | grep 'not found' | awk '{print $1}' | tr '\n' ' ')
		echo "node-llama-cpp CUDA libraries: ${missing:+missing }${missing:-all found}"
	else
		echo "node-llama-cpp CUDA package: not installed"
	fi
} >"$OUT/environment.txt" 2>&1
# what node-llama-cpp itself picks (gpu: false | "cuda" | ...), its devices and VRAM. A file inside the tree (it
# resolves node-llama-cpp from there; under `node -e` its binary self-test fails to spawn), in the ignored .gpu/
mkdir -p .gpu
cat >.gpu/probe.mjs <<'PROBE'
import fs from 'node:fs';
const { getLlama } = await import('node-llama-cpp');
const llama = await getLlama({ build: 'never', skipDownload: true, progressLogs: false, logLevel: 'error' });
const out = { gpu: llama.gpu, devices: llama.gpu ? await llama.getGpuDeviceNames() : [], vram: llama.gpu ? await llama.getVramState() : null };
fs.writeFileSync(`${process.env.OUT}/node-llama-cpp-gpu.json`, JSON.stringify(out, null, 2) + '\n');
console.log(JSON.stringify(out));
PROBE
OUT=$OUT step nlc-gpu 20 node .gpu/probe.mjs
cat "$OUT/environment.txt" | tee -a "$LOG" >&2

# ---- 2. build --------------------------------------------------------------------------------------------------------
step build-addon 60 node native/build.mjs --quiet
[[ -f dist/sidecar.mjs && -f dist/bench.mjs ]] || step build-bundles 30 node esbuild.mjs
if command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc || -n "${NVCC:-}" ]]; then
	export REPOKV_CUDA_ARCHS=$ARCHS
	step build-cuda 60 node native/build.mjs --cuda
elif [[ -x native/build/cuda/cuda-check ]]; then
	say "build-cuda: no nvcc here; using the carried native/build/cuda/cuda-check"
else
	say "build-cuda: no nvcc here and no carried native/build/cuda/cuda-check"
fi
[[ -f native/build/cuda/info.json ]] && cp native/build/cuda/info.json "$OUT/cuda-build.json"

# ---- 3. the CUDA kernels against the CPU kernels ---------------------------------------------------------------------
if [[ -x native/build/cuda/cuda-check ]]; then
	step cuda-check 30 sh -c "native/build/cuda/cuda-check $([[ $DRY == 1 ]] || echo --bench) >'$OUT/cuda-check.json'"
	rc=$?
	((rc == 77)) && say "cuda-check: SKIPPED ($(cat "$OUT/cuda-check.json"))"
else
	say "cuda-check: not built (no nvcc here and none carried)"
	echo '{"skipped":true,"reason":"not built: no nvcc"}' >"$OUT/cuda-check.json"
fi
if ((DRY)); then
	# no GPU: the same kernels compiled by g++ against a CPU emulation of CUDA (native/src/cuda/cuda_emu.h)
	step build-cuda-emu 60 node native/build.mjs --cuda-emu
	step cuda-emu-check 60 sh -c "native/build/cuda-emu/cuda-check --quick >'$OUT/cuda-emu-check.json'"
fi
step cuda-test 60 sh -c "node --test test/native/cuda.test.mjs >'$OUT/cuda-test.txt' 2>&1"

# ---- 4. fixtures -------------------------------------------------------------------------------------------------------
if ((DRY)); then
	TARGET_ARGS=(--shape qwen2.5-coder-0.5b --type Q4_K_M --layers 1 --threads "$THREADS")
	DRAFT_ARGS=(--shape qwen2.5-coder-0.5b --type Q8_0 --layers 1)
else
	TARGET_ARGS=(--shape qwen2.5-coder-7b --type Q4_K_M --layers "$LAYERS" --threads "$THREADS")
	DRAFT_ARGS=(--shape qwen2.5-coder-0.5b --type Q8_0)
fi
step fixture-target 60 sh -c "node native/test-fixtures/real-shapes.mjs ${TARGET_ARGS[*]} >'$OUT/target-path.txt'"
TARGET=$(tail -n1 "$OUT/target-path.txt" 2>/dev/null)

# ---- 5. node-llama-cpp's CUDA build on the target: the baseline ------------------------------------------------------
if [[ -n "$TARGET" && -f "$TARGET" ]]; then
	if ((DRY)); then CONTEXTS=128; DECODE=4; else CONTEXTS="32768 131072"; DECODE=32; fi
	# one context and configuration at a time: a 128K run cut by the budget keeps the rows before it, and the device
	# memory sampled while it runs (nvidia-smi every 200 ms: the whole GPU's, so one process at a time) is its own
	for ctx in $CONTEXTS; do
		for config in llama-f16 llama-f16-fa llama-q4_0-fa; do
			sampler=
			if command -v nvidia-smi >/dev/null; then
				nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$OUT/vram-$ctx-$config.txt" 2>/dev/null &
				sampler=$!
			fi
			step "speed-$ctx-$config" 30 sh -c "node bin/repokv.js bench speed --model '$TARGET' --configs $config --contexts $ctx --threads $THREADS --repeats 1 --decode-tokens $DECODE --json >'$OUT/speed-node-llama-cpp-$ctx-$config.json'"
			[[ -n $sampler ]] && kill "$sampler" 2>/dev/null
		done
	done
else
	say "speed: SKIPPED (no target fixture)"
fi

# ---- 6. the draft's fixture ----------------------------------------------------------------------------------------------
step fixture-draft 60 sh -c "node native/test-fixtures/real-shapes.mjs ${DRAFT_ARGS[*]} >'$OUT/draft-path.txt'"

# ---- 7. summary --------------------------------------------------------------------------------------------------------
OUT=$OUT DRY=$DRY node --input-type=module -e '
	import fs from "node:fs";
	const out = process.env.OUT;
	const read = (f) => { try { return JSON.parse(fs.readFileSync(`${out}/${f}`, "utf8")); } catch { return undefined; } };
	const env = fs.readFileSync(`${out}/environment.txt`, "utf8");
	const steps = fs.readFileSync(`${out}/steps.tsv`, "utf8").trim().split("\n").slice(1).map((l) => l.split("\t"));
	const cuda = read("cuda-check.json");
	const nlc = read("node-llama-cpp-gpu.json");
	const speedFiles = fs.readdirSync(out).filter((f) => /^speed-node-llama-cpp-\d+-.*\.json$/.test(f));
	const peakMiB = (ctx, config) => { try { const v = fs.readFileSync(`${out}/vram-${ctx}-${config}.txt`, "utf8").trim().split("\n").map(Number).filter(Number.isFinite); return v.length ? Math.max(...v) : null; } catch { return null; } };
	const speedRows = speedFiles.flatMap((f) => read(f)?.rows ?? []).map((r) => ({ ...r, peakDeviceMiB: peakMiB(r.context, r.config) })).sort((x, y) => x.context - y.context || x.config.localeCompare(y.config));
	const speed = speedRows.length ? { rows: speedRows } : undefined;
	const md = [];
	md.push(`# GPU check${process.env.DRY === "1" ? " (dry run: no GPU, small inputs)" : ""}`, "", "Command: `bench/gpu-check.sh" + (process.env.DRY === "1" ? " --dry-run" : "") + "`", "", "```", env.trim(), "```", "");
	md.push("| step | status | s |", "|---|---|---|", ...steps.map(([n, s, t]) => `| ${n} | ${s} | ${t} |`), "");
	md.push(`node-llama-cpp backend: ${nlc ? `gpu ${JSON.stringify(nlc.gpu)}, devices ${JSON.stringify(nlc.devices)}` : "not probed"}`, "");
	md.push("## CUDA kernels against the CPU kernels (native/build/cuda/cuda-check)", "");
	if (!cuda) md.push("no result");
	else if (cuda.skipped || cuda.error) md.push(`SKIPPED or failed: ${cuda.reason ?? cuda.error}`, "");
	else {
		const worst = {};
		for (const c of cuda.checks) { const k = `${c.kernel} ${c.tier}`; worst[k] = Math.max(worst[k] ?? 0, c.relDiff); }
		md.push(`${cuda.device}: ${cuda.checks.length} checks, ${cuda.failed} over the tolerance ${cuda.tolerance}`, "", "| kernel | worst relative difference |", "|---|---|", ...Object.entries(worst).map(([k, v]) => `| ${k} | ${v.toExponential(2)} |`), "");
		if (cuda.bench) md.push("Decode attention over one KV head (7 query rows, head dim 128), device time:", "", "| tier | tokens | device bytes | ms | GB/s |", "|---|---|---|---|---|", ...cuda.bench.map((b) => `| ${b.tier} | ${b.tokens} | ${b.deviceBytes} | ${b.medianMs} | ${b.GBps} |`), "");
	}
	const emu = read("cuda-emu-check.json");
	if (emu) md.push("## The same kernels in the CPU emulation (native/build/cuda-emu/cuda-check --quick)", "", `${emu.device}: ${emu.checks?.length ?? 0} checks, ${emu.failed ?? "?"} over the tolerance ${emu.tolerance}, worst relative difference ${Math.max(...(emu.checks ?? []).map((c) => c.relDiff)).toExponential(2)}`, "");
	md.push("## node-llama-cpp (its CUDA build when it found a GPU) on the target fixture", "");
	if (!speed) md.push("not run");
	else md.push("| context | config | prefill tok/s | decode tok/s | peak RSS MB | peak device MiB (whole GPU) |", "|---|---|---|---|---|---|", ...speed.rows.map((r) => `| ${r.context} | ${r.config} | ${r.prefillTokPerS} | ${r.decodeTokPerS} | ${r.peakRssMb} | ${r.peakDeviceMiB ?? "-"} |`), "");
	md.push("## Not measured", "", "The native engine has no CUDA forward pass yet (docs/gpu.md): parity of a CUDA engine with the CPU engine and with node-llama-cpp, its decode speed at 32K/128K against the rows above, its time to first token and its peak device memory are not measured by this check.");
	fs.writeFileSync(`${out}/summary.md`, md.join("\n") + "\n");
	fs.writeFileSync(`${out}/summary.json`, JSON.stringify({ dryRun: process.env.DRY === "1", steps: steps.map(([name, status, seconds]) => ({ name, status, seconds: Number(seconds) })), nodeLlamaCpp: nlc ?? null, cudaCheck: cuda ?? null, speed: speed ?? null }, null, 2) + "\n");
' && say "summary: $OUT/summary.md ($((SECONDS - START))s in all)"
