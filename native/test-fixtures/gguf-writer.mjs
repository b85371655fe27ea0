// A small GGUF (v3) writer for test fixtures: metadata of every scalar/array type llama.cpp checks, and tensors in
// F32, F16, BF16, Q8_0 and Q4_0 (quantized with the same reference rounding as ggml's quantize_row_*_ref).
import fs from 'node:fs';

export const GGUF = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 };
export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 };
const BLOCK = { [GGML.F32]: [1, 4], [GGML.F16]: [1, 2], [GGML.BF16]: [1, 2], [GGML.Q8_0]: [32, 34], [GGML.Q4_0]: [32, 18] };

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** float32 -> IEEE half bits, round to nearest even (as F16C / ggml). */
export function toHalf(value) {
	f32buf[0] = value;
	const x = u32buf[0];
	const sign = (x >>> 16) & 0x8000;
	const exp = (x >>> 23) & 0xff;
	let mant = x & 0x7fffff;
	if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
	let e = exp - 127 + 15;
	if (e >= 0x1f) return sign | 0x7c00;
	if (e <= 0) {
		if (e < -10) return sign;
		mant |= 0x800000;
		const shift = 14 - e;
		let h = mant >>> shift;
		const rem = mant & ((1 << shift) - 1);
		const half = 1 << (shift - 1);
		if (rem > half || (rem === half && (h & 1))) h++;
		return sign | h;
	}
	let h = (e << 10) | (mant >>> 13);
	const rem = mant & 0x1fff;
	if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
	return sign | h;
}

export function fromHalf(h) {
	const s = h & 0x8000 ? -1 : 1;
	const e = (h >>> 10) & 0x1f;
	const m = h & 0x3ff;
	if (e === 0) return s * m * 2 ** -24;
	if (e === 31) return m ? NaN : s * Infinity;
	return s * (1 + m / 1024) * 2 ** (e - 15);
}

function toBf16(value) {
	f32buf[0] = value;
	const u = u32buf[0];
	if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 64;
	return (u + (0x7fff + ((u >>> 16) & 1))) >>> 16;
}

/** Encodes float data as a ggml tensor payload of the given type. */
export function encode(data, type) {
	const n = data.length;
	switch (type) {
		case GGML.F32: return Buffer.from(Float32Array.from(data).buffer);
		case GGML.F16: {
			const out = new Uint16Array(n);
			for (let i = 0; i < n; i++) out[i] = toHalf(data[i]);
			return Buffer.from(out.buffer);
		}
		case GGML.BF16: {
			const out = new Uint16Array(n);
			for (let i = 0; i < n; i++) out[i] = toBf16(data[i]);
			return Buffer.from(out.buffer);
		}
		case GGML.Q8_0: {
			// Typed-array writes (not Buffer.writeInt8 per value): fixtures of real models encode ~10^8 values.
			const out = Buffer.alloc((n / 32) * 34);
			const q = new Int8Array(out.buffer, out.byteOffset, out.length);
			for (let b = 0; b < n / 32; b++) {
				let amax = 0;
				for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(data[b * 32 + j]));
				const d = Math.fround(amax / 127);
				const id = d ? Math.fround(1 / d) : 0;
				const h = toHalf(d);
				out[b * 34] = h & 0xff;
				out[b * 34 + 1] = h >>> 8;
				for (let j = 0; j < 32; j++) q[b * 34 + 2 + j] = Math.round(Math.fround(data[b * 32 + j] * id));
			}
			return out;
		}
		case GGML.Q4_0: {
			const out = Buffer.alloc((n / 32) * 18);
			for (let b = 0; b < n / 32; b++) {
				let amax = 0, max = 0;
				for (let j = 0; j < 32; j++) {
					const v = data[b * 32 + j];
					if (Math.abs(v) > amax) {
						amax = Math.abs(v);
						max = v;
					}
				}
				const d = Math.fround(max / -8);
				const id = d ? Math.fround(1 / d) : 0;
				out.writeUInt16LE(toHalf(d), b * 18);
				for (let j = 0; j < 16; j++) {
					const x0 = Math.fround(data[b * 32 + j] * id);
					const x1 = Math.fround(data[b * 32 + 16 + j] * id);
					const q0 = Math.min(15, Math.trunc(Math.fround(x0 + 8.5)));
					const q1 = Math.min(15, Math.trunc(Math.fround(x1 + 8.5)));
					out.writeUInt8(q0 | (q1 << 4), b * 18 + 2 + j);
				}
			}
			return out;
		}
		default: throw new Error(`encode: unsupported ggml type ${type}`);
	}
}

class Out {
	constructor() {
		this.parts = [];
		this.size = 0;
	}
	push(buf) {
		this.parts.push(buf);
		this.size += buf.length;
	}
	u32(v) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.push(b); }
	i32(v) { const b = Buffer.alloc(4); b.writeInt32LE(v); this.push(b); }
	u64(v) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
	f32(v) { const b = Buffer.alloc(4); b.writeFloatLE(v); this.push(b); }
	str(s) { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b); }
	scalar(type, v) {
		switch (type) {
			case GGUF.UINT8: this.push(Buffer.from([v])); break;
			case GGUF.BOOL: this.push(Buffer.from([v ? 1 : 0])); break;
			case GGUF.UINT32: this.u32(v); break;
			case GGUF.INT32: this.i32(v); break;
			case GGUF.FLOAT32: this.f32(v); break;
			case GGUF.UINT64: this.u64(v); break;
			case GGUF.STRING: this.str(v); break;
			default: throw new Error(`gguf: unsupported metadata type ${type}`);
		}
	}
}

/** Bytes of a tensor's payload in a ggml type. */
export function tensorBytes(ne, type) {
	const [blk, bytes] = BLOCK[type];
	if (ne[0] % blk) throw new Error(`row length ${ne[0]} is not a multiple of ${blk}`);
	return (ne.reduce((a, b) => a * b, 1) / blk) * bytes;
}

/** The header (magic, metadata, tensor table, padding to the alignment) and each tensor's data offset. */
function ggufHeader(kv, tensors, alignment) {
	const head = new Out();
	head.push(Buffer.from('GGUF'));
	head.u32(3);
	head.u64(tensors.length);
	head.u64(kv.length);
	for (const { key, type, value, itemType } of kv) {
		head.str(key);
		head.u32(type);
		if (type === GGUF.ARRAY) {
			head.u32(itemType);
			head.u64(value.length);
			for (const v of value) head.scalar(itemType, v);
		} else head.scalar(type, value);
	}
	let offset = 0;
	for (const t of tensors) {
		const size = tensorBytes(t.ne, t.type);
		head.str(t.name);
		head.u32(t.ne.length);
		for (const n of t.ne) head.u64(n);
		head.u32(t.type);
		head.u64(offset);
		offset += Math.ceil(size / alignment) * alignment;
	}
	head.push(pad(head.size, alignment));
	return Buffer.concat(head.parts);
}

const pad = (n, alignment) => Buffer.alloc((alignment - (n % alignment)) % alignment);

/**
 * Writes a GGUF file.
 * @param {string} file
 * @param {{key: string, type: number, value: any, itemType?: number}[]} kv  (type ARRAY needs itemType)
 * @param {{name: string, ne: number[], type: number, data: ArrayLike<number>}[]} tensors
 */
export function writeGguf(file, kv, tensors, alignment = 32) {
	const body = [];
	for (const t of tensors) {
		const payload = encode(t.data, t.type);
		if (payload.length !== tensorBytes(t.ne, t.type)) throw new Error(`${t.name}: payload size mismatch`);
		body.push(payload, pad(payload.length, alignment));
	}
	fs.writeFileSync(file, Buffer.concat([ggufHeader(kv, tensors, alignment), ...body]));
}

/**
 * Writes a GGUF file tensor by tensor, chunk by chunk, so a model of any size (a 151,936-row embedding) is never held
 * in memory: each tensor's `chunks()` yields its float data in order, in pieces whose lengths are multiples of the
 * type's block (whole rows are simplest). The file is written under a temporary name and renamed when complete, so
 * an interrupted run never leaves a truncated file under the final name.
 * @param {string} file
 * @param {{key: string, type: number, value: any, itemType?: number}[]} kv
 * @param {{name: string, ne: number[], type: number, chunks: () => Iterable<Float32Array>}[]} tensors
 */
export function writeGgufStreaming(file, kv, tensors, alignment = 32) {
	const partial = `${file}.partial-${process.pid}`;
	const fd = fs.openSync(partial, 'w');
	try {
		fs.writeSync(fd, ggufHeader(kv, tensors, alignment));
		for (const t of tensors) {
			const want = tensorBytes(t.ne, t.type);
			let written = 0;
			for (const chunk of t.chunks()) {
				const payload = encode(chunk, t.type);
				fs.writeSync(fd, payload);
				written += payload.length;
			}
			if (written !== want) throw new Error(`${t.name}: wrote ${written} bytes, expected ${want}`);
			fs.writeSync(fd, pad(written, alignment));
		}
	} catch (error) {
		fs.closeSync(fd);
		fs.rmSync(partial, { force: true });
		throw error;
	}
	fs.closeSync(fd);
	fs.renameSync(partial, file);
}
