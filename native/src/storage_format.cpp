#include "storage_format.h"

namespace repokv {

const TierInfo kTiers[kTierCount] = {
    {Tier::F16, "f16", false}, {Tier::Q8, "q8", true}, {Tier::Kivi4, "kivi4", true}, {Tier::Kivi2, "kivi2", true}, {Tier::OneBit, "onebit", true},
};

const char *tier_name(Tier t) { return (int)t < kTierCount ? kTiers[(int)t].name : "?"; }

bool parse_tier(const std::string &name, Tier &out) {
    for (const TierInfo &i : kTiers)
        if (name == i.name) return out = i.tier, true;
    return false;
}

}  // namespace repokv
