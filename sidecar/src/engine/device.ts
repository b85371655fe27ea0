// Which device the native engine runs on (docs/gpu.md): the `repokv.device` setting and the CLI's `--device`,
// resolved against what this machine and this build have. The resolution is a pure function of the request and a
// probe, so it is tested on machines without a GPU; the probe only looks at files (no CUDA library is loaded).
//
// Today the native engine's forward pass runs on ggml's CPU backend only (native/src/model.cpp takes the CPU device,
// and attention is a CPU custom op): the CUDA attention kernels exist (native/src/cuda/) but are not yet wired into a
// CUDA graph. So `cudaEngine` is false, `auto` resolves to the CPU, and `cuda` runs on the CPU with one message
// saying why. When the CUDA path lands, the probe reports it and nothing else here changes.
import * as fs from 'node:fs';

import type { DeviceSetting, DeviceStatus } from '../protocol';

export interface CudaProbe {
	/** Whether this build of repokv can run the native engine's forward pass on CUDA. */
	readonly cudaEngine: boolean;
	/** Whether an NVIDIA GPU and its kernel driver are visible (/proc/driver/nvidia/gpus/*); a hint for the message only. */
	readonly gpuVisible: boolean;
}

/** Looks, without loading anything, for an NVIDIA driver with a GPU. */
export function probeCuda(): CudaProbe {
	let gpuVisible = false;
	try {
		gpuVisible = fs.readdirSync('/proc/driver/nvidia/gpus').length > 0;
	} catch {
		gpuVisible = false;
	}
	return { cudaEngine: false, gpuVisible };
}

/** The device used for `requested`, with the reason when it is not what was asked (`auto` never has one on the CPU). */
export function resolveDevice(requested: DeviceSetting, probe: CudaProbe): DeviceStatus {
	if (requested === 'cpu') {
		return { requested, used: 'cpu' };
	}
	if (probe.cudaEngine && probe.gpuVisible) {
		return { requested, used: 'cuda' };
	}
	if (requested === 'auto') {
		return { requested, used: 'cpu' };
	}
	const reason = !probe.cudaEngine
		? `the native engine's CUDA path is not built yet (its attention kernels exist but are not wired into a CUDA forward pass; docs/gpu.md)${probe.gpuVisible ? '' : ', and no NVIDIA GPU is visible'}`
		: 'no NVIDIA GPU is visible (no /proc/driver/nvidia/gpus entry)';
	return { requested, used: 'cpu', reason };
}

/** One line for a status bar or stderr: `device cuda requested: running on the CPU (reason)`. */
export function describeDevice(device: DeviceStatus): string {
	return device.reason === undefined ? `device ${device.used}` : `device ${device.requested} requested: running on the CPU (${device.reason})`;
}
