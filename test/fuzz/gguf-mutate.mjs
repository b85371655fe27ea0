// Seeded mutations of GGUF files for the native loader fuzz (test/fuzz/gguf.fuzz.mjs, test/native/gguf-fuzz.test.mjs).
//
// A valid file is first walked once (layout()): the byte offset and width of every length, count, type, shape and
// offset field of the header, the metadata and the tensor table, and where the tensor data begins. Mutations then
// aim mostly at those fields (the parser's decisions hang on them) and at the header region, with truncations at
// many offsets and, less often, blind byte noise anywhere.

import { rng as mulberry32 } from './support/random.mjs';

/** The fuzz's seeded PRNG (test/fuzz/support/random.mjs) with integer and pick helpers. */
export function rng(seed) {
	const next = mulberry32(seed);
	return Object.assign(next, {
		/** @param {number} n */
		int: (n) => Math.floor(next() * n),
		/**
		 * @template T
		 * @param {readonly T[]} a
		 * @returns {T}
		 */
		pick: (a) => a[Math.floor(next() * a.length)],
	});
}

const SCALAR = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8]; // GGUF value sizes by type (8 string, 9 array)

/**
 * Fields of a GGUF buffer: [{ at, width, what, key? }] and dataStart (first byte of tensor data).
 * `what`: magic, version, n_tensors, n_kv, key_len, type, arr_type, arr_len, str_len, value, n_dims, ne, ggml_type,
 * offset, tensor_name_len.
 */
export function layout(buf) {
	const fields = [];
	let p = 0;
	const u32 = () => buf.readUInt32LE(p);
	const u64 = () => Number(buf.readBigUInt64LE(p));
	const field = (width, what, key) => fields.push({ at: p, width, what, key });
	field(4, 'magic'); p += 4;
	field(4, 'version'); p += 4;
	field(8, 'n_tensors'); const nt = u64(); p += 8;
	field(8, 'n_kv'); const nkv = u64(); p += 8;
	let alignment = 32;
	const str = (what) => {
		field(8, what);
		const n = u64();
		p += 8;
		const s = buf.toString('utf8', p, p + n);
		p += n;
		return s;
	};
	for (let i = 0; i < nkv; i++) {
		const key = str('key_len');
		field(4, 'type', key);
		const type = u32(); p += 4;
		if (type === 9) {
			field(4, 'arr_type', key);
			const et = u32(); p += 4;
			field(8, 'arr_len', key);
			const n = u64(); p += 8;
			if (et === 8) {
				for (let j = 0; j < n; j++) {
					// only the first few string lengths of long arrays (token lists) become targets
					if (j < 4) field(8, 'str_len', key);
					p += 8 + u64();
				}
			} else {
				field(Math.min(8, SCALAR[et] * n), 'value', key);
				p += SCALAR[et] * n;
			}
		} else if (type === 8) {
			str('str_len');
		} else {
			if (key === 'general.alignment') alignment = u32();
			field(SCALAR[type], 'value', key);
			p += SCALAR[type];
		}
	}
	for (let i = 0; i < nt; i++) {
		str('tensor_name_len');
		field(4, 'n_dims');
		const nd = u32(); p += 4;
		for (let d = 0; d < nd; d++) {
			field(8, 'ne'); p += 8;
		}
		field(4, 'ggml_type'); p += 4;
		field(8, 'offset'); p += 8;
	}
	const headerEnd = p;
	const dataStart = Math.ceil(p / alignment) * alignment;
	return { fields, headerEnd, dataStart, size: buf.length };
}

// Values that sit on the parser's edges: zero, one, sign and width boundaries, "a bit more than the file".
function interesting(width, r, size) {
	const vals = [0n, 1n, 2n, 3n, 4n, 7n, 8n, 9n, 31n, 32n, 63n, 64n, 255n, 256n, 4096n, 65535n, 65536n, 65537n,
		BigInt(size), BigInt(size + 1), BigInt(Math.floor(size / 2)), 0x7fffffffn, 0x80000000n, 0xffffffffn,
		0x100000000n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn, 1n << 40n, 1n << 30n, 1n << 24n];
	const max = width >= 8 ? (1n << 64n) - 1n : (1n << BigInt(8 * width)) - 1n;
	let v = r.pick(vals);
	if (r() < 0.25) v = BigInt(r.int(1 << 16)); // small random
	return v & max;
}

function writeUint(buf, at, width, v) {
	for (let i = 0; i < width && at + i < buf.length; i++) buf[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/**
 * One mutated copy of a GGUF file of `fullSize` bytes whose first bytes are `base` (the whole file, or for large
 * models a prefix covering the header and metadata) with its layout `lay`. Returns { buf, length, how }: the new file
 * is `buf` followed, when `length` > buf.length, by the original's bytes from buf.length to `length`. `how` names the
 * mutation (with the seed it reproduces the file).
 */
export function mutate(base, lay, r, fullSize = base.length) {
	const roll = r();
	const header = Math.max(lay.dataStart, 24);
	lay.values ??= lay.fields.filter((f) => f.what === 'value' && f.key);
	if (roll < 0.2) {
		// truncation: half inside the header and metadata, half anywhere (tensor data included)
		const at = r() < 0.5 ? r.int(header + 1) : r.int(fullSize);
		return { buf: base.subarray(0, Math.min(at, base.length)), length: at, how: `truncate@${at}` };
	}
	const length = r() < 0.9 ? fullSize : Math.max(header, r.int(fullSize));
	const buf = Buffer.from(base.subarray(0, Math.min(length, base.length)));
	const edits = [];
	const n = 1 + (r() < 0.3 ? r.int(4) : 0);
	for (let k = 0; k < n; k++) {
		const m = r();
		if (m < 0.25 && lay.values.length) {
			// a metadata value (hyperparameters: layer and head counts, lengths, epsilons) set to an edge value or
			// random bits: the file stays well-formed, the model checks must catch it
			const f = r.pick(lay.values);
			const v = r() < 0.7 ? interesting(f.width, r, buf.length) : BigInt(r.int(2 ** 31)) * BigInt(r.int(2 ** 31));
			writeUint(buf, f.at, f.width, v & ((1n << BigInt(8 * f.width)) - 1n));
			edits.push(`value(${f.key})@${f.at}=${v}`);
		} else if (m < 0.6 && lay.fields.length) {
			// a structural field set to an interesting value
			const f = r.pick(lay.fields);
			const v = interesting(f.width, r, buf.length);
			writeUint(buf, f.at, f.width, v);
			edits.push(`${f.what}${f.key ? `(${f.key})` : ''}@${f.at}=${v}`);
		} else if (m < 0.72 && lay.fields.length) {
			// a structural field off by a small amount (lengths and counts one too many or too few)
			const f = r.pick(lay.fields);
			const old = f.width === 8 ? buf.readBigUInt64LE(f.at) : f.width === 4 ? BigInt(buf.readUInt32LE(f.at)) : BigInt(buf[f.at]);
			const d = BigInt(r.pick([-2, -1, 1, 2, 8, -8, 1000]));
			const v = (old + d) & ((1n << BigInt(8 * f.width)) - 1n);
			writeUint(buf, f.at, f.width, v);
			edits.push(`${f.what}${f.key ? `(${f.key})` : ''}@${f.at}${d > 0 ? '+' : ''}${d}`);
		} else if (m < 0.92) {
			// random bytes in the header region
			const at = r.int(Math.min(header, buf.length));
			const len = 1 + r.int(8);
			for (let i = 0; i < len && at + i < buf.length; i++) buf[at + i] = r.int(256);
			edits.push(`bytes@${at}x${len}`);
		} else {
			// random bytes anywhere (tensor data: NaNs and garbage weights must still give a clean load or error)
			const at = r.int(buf.length);
			const len = 1 + r.int(64);
			for (let i = 0; i < len && at + i < buf.length; i++) buf[at + i] = r.int(256);
			edits.push(`data@${at}x${len}`);
		}
	}
	return { buf, length, how: edits.join(',') + (length < fullSize ? `,cut@${length}` : '') };
}
