#include "gguf_check.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "ggml.h"

namespace repokv {

namespace {

// GGUF value types (gguf.h's enum gguf_type; repeated so this file needs only ggml.h for the tensor types).
enum : uint32_t { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64, T_COUNT };
const uint64_t kScalarSize[T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

// A failure: kind + message. Thrown inside this file only, caught by gguf_check_file.
struct Bad {
    const char *kind;
    std::string message;
};

// Sequential reader over a file of known size with its own buffer: every read is checked against the bytes left
// in the file before anything is allocated for it.
class Reader {
public:
    Reader(FILE *f, uint64_t size) : f_(f), size_(size) {}
    uint64_t pos() const { return pos_; }
    uint64_t left() const { return size_ - pos_; }

    void need(uint64_t n, const char *what) const {
        if (n > left()) {
            throw Bad{"truncated", std::string("the file ends inside ") + what + " (needs " + std::to_string(n) + " bytes at offset " +
                                       std::to_string(pos_) + ", " + std::to_string(left()) + " left)"};
        }
    }
    void read(void *dst, uint64_t n, const char *what) {
        need(n, what);
        char *out = (char *)dst;
        while (n) {
            if (cur_ == end_) fill();
            const uint64_t k = std::min<uint64_t>(n, end_ - cur_);
            memcpy(out, buf_.data() + cur_, k);
            out += k, cur_ += k, pos_ += k, n -= k;
        }
    }
    void skip(uint64_t n, const char *what) {
        need(n, what);
        const uint64_t in_buf = end_ - cur_;
        if (n <= in_buf) {
            cur_ += n;
        } else {
            // past the buffer: seek (the bytes exist, need() checked the size)
            if (fseeko(f_, (off_t)(pos_ + n), SEEK_SET) != 0) throw Bad{"io", std::string("seek failed: ") + strerror(errno)};
            cur_ = end_ = 0;
        }
        pos_ += n;
    }
    template <typename T> T get(const char *what) {
        T v;
        read(&v, sizeof v, what);
        return v;
    }
    // A length-prefixed string, at most max_len bytes.
    std::string str(uint64_t max_len, const char *what, const char *too_long_kind) {
        const uint64_t n = get<uint64_t>(what);
        if (n > max_len) {
            throw Bad{too_long_kind, std::string(what) + " at offset " + std::to_string(pos_ - 8) + " claims " + std::to_string(n) +
                                         " bytes (limit " + std::to_string(max_len) + ")"};
        }
        std::string s;
        need(n, what);
        s.resize(n);
        read(&s[0], n, what);
        return s;
    }
    // Skips a length-prefixed string without keeping it.
    void skip_str(uint64_t max_len, const char *what) {
        const uint64_t n = get<uint64_t>(what);
        if (n > max_len) {
            throw Bad{"string-length", std::string(what) + " at offset " + std::to_string(pos_ - 8) + " claims " + std::to_string(n) +
                                           " bytes (limit " + std::to_string(max_len) + ")"};
        }
        skip(n, what);
    }

private:
    void fill() {
        // the buffer is consumed: continue from pos_ (a skip may have moved the file position)
        if (buf_.empty()) buf_.resize(1 << 16);
        if (fseeko(f_, (off_t)pos_, SEEK_SET) != 0) throw Bad{"io", std::string("seek failed: ") + strerror(errno)};
        const size_t k = fread(buf_.data(), 1, buf_.size(), f_);
        if (k == 0) throw Bad{"io", "read failed at offset " + std::to_string(pos_) + " (the file shrank while it was read?)"};
        cur_ = 0;
        end_ = k;
    }

    FILE *f_;
    uint64_t size_;
    uint64_t pos_ = 0;
    std::vector<char> buf_;
    uint64_t cur_ = 0, end_ = 0;
};

std::string quoted(const std::string &s) {
    // names in messages: printable ASCII only, at most 64 characters (a hostile name must not flood the log)
    std::string out = "'";
    for (size_t i = 0; i < s.size() && i < 64; i++) out += (s[i] >= 32 && s[i] < 127) ? s[i] : '?';
    if (s.size() > 64) out += "...";
    return out + "'";
}

// Checked a * b for sizes; false on overflow.
bool mul_ok(uint64_t a, uint64_t b, uint64_t &out) {
    if (a && b > UINT64_MAX / a) return false;
    out = a * b;
    return true;
}

void check(Reader &r, const GgufLimits &lim, GgufCheck &res) {
    // ---- header ----
    char magic[4];
    r.read(magic, 4, "the magic");
    if (memcmp(magic, "GGUF", 4) != 0) throw Bad{"magic", "not a GGUF file (bad magic)"};
    res.version = r.get<uint32_t>("the header");
    if ((res.version & 0xFFFF) == 0 && res.version != 0)
        throw Bad{"version", "GGUF version " + std::to_string(res.version) + " looks byte-swapped (a big-endian file?)"};
    if (res.version < 2 || res.version > 3)
        throw Bad{"version", "GGUF version " + std::to_string(res.version) + " is not supported (2 or 3)"};
    const int64_t n_tensors = r.get<int64_t>("the header");
    const int64_t n_kv = r.get<int64_t>("the header");
    if (n_tensors < 0 || (uint64_t)n_tensors > lim.max_tensors)
        throw Bad{"count", "tensor count " + std::to_string(n_tensors) + " is out of range (0.." + std::to_string(lim.max_tensors) + ")"};
    if (n_kv < 0 || (uint64_t)n_kv > lim.max_kv)
        throw Bad{"count", "metadata key count " + std::to_string(n_kv) + " is out of range (0.." + std::to_string(lim.max_kv) + ")"};
    res.n_tensors = (uint64_t)n_tensors;
    res.n_kv = (uint64_t)n_kv;
    // Each key-value pair takes at least 8 + 1 + 4 + 1 bytes (key length, key, type, value), each tensor info 8 + 4 + 4 + 8
    // (name length, dimension count, type, offset): counts the rest of the file cannot hold are rejected before the
    // first entry is read.
    if (res.n_kv * 14 + res.n_tensors * 24 > r.left())
        throw Bad{"count", std::to_string(n_kv) + " metadata keys and " + std::to_string(n_tensors) + " tensors cannot fit in the " +
                               std::to_string(r.left()) + " bytes that follow the header"};

    // ---- key-value pairs ----
    std::unordered_set<std::string> keys;
    keys.reserve(res.n_kv);
    for (uint64_t i = 0; i < res.n_kv; i++) {
        const uint64_t at = r.pos();
        const std::string key = r.str(lim.max_key_length, "a metadata key", "key");
        if (key.empty()) throw Bad{"key", "metadata key " + std::to_string(i) + " at offset " + std::to_string(at) + " is empty"};
        if (!keys.insert(key).second) throw Bad{"duplicate-key", "metadata key " + quoted(key) + " appears twice"};
        uint32_t type = r.get<uint32_t>("a metadata value type");
        if (type >= T_COUNT)
            throw Bad{"value-type", "metadata key " + quoted(key) + " has invalid value type " + std::to_string(type)};
        if (key == "general.alignment") {
            if (type != T_U32) throw Bad{"alignment", "general.alignment must be UINT32 (value type " + std::to_string(type) + ")"};
            const uint32_t a = r.get<uint32_t>("general.alignment");
            if (a == 0 || (a & (a - 1)) != 0) throw Bad{"alignment", "general.alignment " + std::to_string(a) + " is not a power of 2"};
            res.alignment = a;
            continue;
        }
        if (type == T_ARRAY) {
            const uint32_t et = r.get<uint32_t>("an array element type");
            const uint64_t n = r.get<uint64_t>("an array length");
            if (et >= T_COUNT || et == T_ARRAY)
                throw Bad{"value-type", "metadata array " + quoted(key) + " has invalid element type " + std::to_string(et)};
            if (n > lim.max_array_length)
                throw Bad{"array-length", "metadata array " + quoted(key) + " claims " + std::to_string(n) + " elements (limit " +
                                              std::to_string(lim.max_array_length) + ")"};
            if (et == T_STRING) {
                // every string has an 8-byte length: check the count against the file before walking it
                uint64_t min_bytes;
                if (!mul_ok(n, 8, min_bytes) || min_bytes > r.left())
                    throw Bad{"array-length", "metadata array " + quoted(key) + " claims " + std::to_string(n) + " strings, more than the file holds"};
                for (uint64_t j = 0; j < n; j++) r.skip_str(lim.max_string_length, "a string in a metadata array");
            } else {
                uint64_t bytes;
                if (!mul_ok(n, kScalarSize[et], bytes) || bytes > r.left())
                    throw Bad{"array-length", "metadata array " + quoted(key) + " claims " + std::to_string(n) + " elements, more than the file holds"};
                r.skip(bytes, "a metadata array");
            }
        } else if (type == T_STRING) {
            r.skip_str(lim.max_string_length, "a metadata string");
        } else {
            r.skip(kScalarSize[type], "a metadata value");
        }
    }

    // ---- tensor infos ----
    std::unordered_set<std::string> names;
    names.reserve(res.n_tensors);
    std::vector<std::pair<uint64_t, uint64_t>> extents;  // (offset, bytes) per tensor, in table order
    extents.reserve(res.n_tensors);
    std::vector<std::string> order;
    order.reserve(res.n_tensors);
    for (uint64_t i = 0; i < res.n_tensors; i++) {
        const std::string name = r.str(GGML_MAX_NAME - 1, "a tensor name", "tensor-name");
        if (!names.insert(name).second) throw Bad{"duplicate-tensor", "tensor " + quoted(name) + " appears twice"};
        const uint32_t n_dims = r.get<uint32_t>("a tensor's dimension count");
        if (n_dims > GGML_MAX_DIMS)
            throw Bad{"tensor-dims", "tensor " + quoted(name) + " has " + std::to_string(n_dims) + " dimensions (at most " + std::to_string(GGML_MAX_DIMS) + ")"};
        int64_t ne[GGML_MAX_DIMS] = {1, 1, 1, 1};
        uint64_t n_elem = 1;
        bool overflow = false;
        for (uint32_t d = 0; d < n_dims; d++) {
            ne[d] = r.get<int64_t>("a tensor's shape");
            if (ne[d] < 0) throw Bad{"tensor-dims", "tensor " + quoted(name) + " has a negative dimension (" + std::to_string(ne[d]) + ")"};
            overflow = overflow || !mul_ok(n_elem, (uint64_t)ne[d], n_elem) || n_elem > (uint64_t)INT64_MAX;
        }
        if (overflow) throw Bad{"tensor-dims", "tensor " + quoted(name) + " has more elements than an int64 holds"};
        const uint32_t type = r.get<uint32_t>("a tensor's type");
        if (type >= GGML_TYPE_COUNT || ggml_blck_size((ggml_type)type) <= 0 || ggml_type_size((ggml_type)type) == 0)
            throw Bad{"tensor-type", "tensor " + quoted(name) + " has invalid ggml type " + std::to_string(type)};
        const uint64_t blck = (uint64_t)ggml_blck_size((ggml_type)type), tsize = ggml_type_size((ggml_type)type);
        if ((uint64_t)ne[0] % blck != 0)
            throw Bad{"tensor-type", "tensor " + quoted(name) + " rows of " + std::to_string(ne[0]) + " elements are not whole " +
                                         ggml_type_name((ggml_type)type) + " blocks of " + std::to_string(blck)};
        uint64_t bytes;
        if (!mul_ok(n_elem / blck, tsize, bytes)) throw Bad{"tensor-size", "tensor " + quoted(name) + " has a size in bytes beyond 2^64"};
        const uint64_t offset = r.get<uint64_t>("a tensor's data offset");
        extents.emplace_back(offset, bytes);
        order.push_back(name);
    }

    // ---- data section: aligned start, tensors packed in table order, each padded, all inside the file ----
    const uint64_t a = res.alignment;
    res.data_offset = (r.pos() + a - 1) / a * a;
    if (res.n_tensors > 0 && res.data_offset > res.file_size)
        throw Bad{"truncated", "the file ends before its tensor data (data section at byte " + std::to_string(res.data_offset) + ")"};
    uint64_t expected = 0;
    for (size_t i = 0; i < extents.size(); i++) {
        const uint64_t offset = extents[i].first, bytes = extents[i].second;
        if (offset != expected)
            throw Bad{"tensor-offset", "tensor " + quoted(order[i]) + " has data offset " + std::to_string(offset) + ", expected " + std::to_string(expected) +
                                           " (tensors must be packed in table order, each padded to " + std::to_string(a) + " bytes)"};
        const uint64_t room = res.file_size - res.data_offset;
        if (bytes > room || offset > room - bytes)
            throw Bad{"truncated", "model file is truncated: tensor " + quoted(order[i]) + " ends at byte " +
                                       std::to_string(res.data_offset + offset + bytes) + " but the file has " + std::to_string(res.file_size) + " bytes"};
        const uint64_t padded = (bytes + a - 1) / a * a;
        expected = offset + padded;  // no overflow: offset + bytes <= file size, padding < a <= 2^31
    }
    res.data_size = expected;
}

}  // namespace

GgufCheck gguf_check_file(const std::string &path, const GgufLimits &limits) {
    GgufCheck res;
    FILE *f = fopen(path.c_str(), "rb");
    if (!f) {
        res.kind = "io";
        res.message = "cannot open model file '" + path + "': " + strerror(errno);
        return res;
    }
    struct stat st {};
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        res.kind = "io";
        res.message = "'" + path + "' is not a regular file";
        return res;
    }
    res.file_size = (uint64_t)st.st_size;
    Reader r(f, res.file_size);
    try {
        check(r, limits, res);
        res.ok = true;
    } catch (const Bad &b) {
        res.kind = b.kind;
        res.message = b.message;
    }
    fclose(f);
    return res;
}

}  // namespace repokv
