// The storage formats ("tiers") of a KV segment: one enum and one name table for the whole engine. The addon exports
// the table as `storageFormats` (addon.cpp), and the TypeScript side reads the names from there, so a name is written
// once on each side of the N-API boundary. The order is part of the addon's interface: `rangeTiers` returns one
// column per tier in this order.
#pragma once

#include <cstdint>
#include <string>

namespace repokv {

enum class Tier : uint8_t {
    F16 = 0,     // keys and values in IEEE half precision
    Q8 = 1,      // the packed formats of quant/quant.h
    Kivi4 = 2,
    Kivi2 = 3,
    OneBit = 4,  // the 1.x-bit tier
    // "dropped" is not a tier: a dropped token is absent from every segment of its head
};
constexpr int kTierCount = 5;

struct TierInfo {
    Tier tier;
    const char *name;  // the name everywhere: the addon, the protocol, the inspector, the docs
    bool packed;       // a format of quant/ (else fp16)
};
// Indexed by Tier.
extern const TierInfo kTiers[kTierCount];

const char *tier_name(Tier t);
bool parse_tier(const std::string &name, Tier &out);

}  // namespace repokv
