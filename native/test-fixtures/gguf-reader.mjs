// Reads a GGUF file's header: every metadata entry with its exact GGUF type (so it can be copied into another file
// unchanged, e.g. a real tokenizer into a generated fixture) and the tensor table. Tensor data is not read.
import fs from 'node:fs';

import { GGUF } from './gguf-writer.mjs';

const SCALAR_BYTES = { [GGUF.UINT8]: 1, [GGUF.INT8]: 1, [GGUF.UINT16]: 2, [GGUF.INT16]: 2, [GGUF.UINT32]: 4, [GGUF.INT32]: 4, [GGUF.FLOAT32]: 4, [GGUF.BOOL]: 1, [GGUF.UINT64]: 8, [GGUF.INT64]: 8, [GGUF.FLOAT64]: 8 };

/**
 * @param {string} file
 * @returns {{version: number, kv: {key: string, type: number, value: any, itemType?: number}[],
 *            tensors: {name: string, ne: number[], type: number, offset: number}[]}}
 */
export function readGgufHeader(file) {
	// Vocabulary files are a few MB; a model's header is at most tens of MB (its token list). Read in growing chunks
	// so a multi-GB model is not read whole.
	const fd = fs.openSync(file, 'r');
	let buf = Buffer.alloc(0);
	let fileOffset = 0;
	const need = (end) => {
		while (end > buf.length) {
			const chunk = Buffer.alloc(Math.max(1 << 20, end - buf.length));
			const n = fs.readSync(fd, chunk, 0, chunk.length, fileOffset);
			if (n === 0) throw new Error(`${file}: truncated GGUF header`);
			fileOffset += n;
			buf = Buffer.concat([buf, chunk.subarray(0, n)]);
		}
	};
	let pos = 0;
	const u32 = () => { need(pos + 4); const v = buf.readUInt32LE(pos); pos += 4; return v; };
	const u64 = () => { need(pos + 8); const v = Number(buf.readBigUInt64LE(pos)); pos += 8; return v; };
	const str = () => { const n = u64(); need(pos + n); const s = buf.toString('utf8', pos, pos + n); pos += n; return s; };
	const scalar = (type) => {
		if (type === GGUF.STRING) return str();
		need(pos + SCALAR_BYTES[type]);
		let v;
		switch (type) {
			case GGUF.UINT8: v = buf.readUInt8(pos); break;
			case GGUF.INT8: v = buf.readInt8(pos); break;
			case GGUF.UINT16: v = buf.readUInt16LE(pos); break;
			case GGUF.INT16: v = buf.readInt16LE(pos); break;
			case GGUF.UINT32: v = buf.readUInt32LE(pos); break;
			case GGUF.INT32: v = buf.readInt32LE(pos); break;
			case GGUF.FLOAT32: v = buf.readFloatLE(pos); break;
			case GGUF.BOOL: v = buf.readUInt8(pos) !== 0; break;
			case GGUF.UINT64: v = Number(buf.readBigUInt64LE(pos)); break;
			case GGUF.INT64: v = Number(buf.readBigInt64LE(pos)); break;
			case GGUF.FLOAT64: v = buf.readDoubleLE(pos); break;
			default: throw new Error(`${file}: unknown GGUF metadata type ${type}`);
		}
		pos += SCALAR_BYTES[type];
		return v;
	};
	try {
		need(4);
		if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${file}: not a GGUF file`);
		pos = 4;
		const version = u32();
		const nTensors = u64();
		const nKv = u64();
		const kv = [];
		for (let i = 0; i < nKv; i++) {
			const key = str();
			const type = u32();
			if (type === GGUF.ARRAY) {
				const itemType = u32();
				const n = u64();
				const value = new Array(n);
				for (let j = 0; j < n; j++) value[j] = scalar(itemType);
				kv.push({ key, type, itemType, value });
			} else kv.push({ key, type, value: scalar(type) });
		}
		const tensors = [];
		for (let i = 0; i < nTensors; i++) {
			const name = str();
			const nDims = u32();
			const ne = Array.from({ length: nDims }, u64);
			tensors.push({ name, ne, type: u32(), offset: u64() });
		}
		return { version, kv, tensors };
	} finally {
		fs.closeSync(fd);
	}
}
