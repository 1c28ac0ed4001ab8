#include "gen_corpus.h"

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string_view>

namespace pipescope::bench {

namespace {

// --- determinism -------------------------------------------------------------------------------

std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// A stable value per key (person, session...), independent of how many numbers were drawn before.
std::uint64_t hashOf(std::uint64_t key, std::uint64_t salt) {
    std::uint64_t state = key * 0xd1342543de82ef95ull + salt;
    return splitmix64(state);
}

// xoshiro256**: fast, and unlike <random>'s distributions it gives the same numbers everywhere.
class Rng {
public:
    explicit Rng(std::uint64_t seed) {
        for (auto& word : m_state)
            word = splitmix64(seed);
    }
    std::uint64_t next() {
        const std::uint64_t result = rotl(m_state[1] * 5, 7) * 9;
        const std::uint64_t t = m_state[1] << 17;
        m_state[2] ^= m_state[0];
        m_state[3] ^= m_state[1];
        m_state[1] ^= m_state[2];
        m_state[0] ^= m_state[3];
        m_state[2] ^= t;
        m_state[3] = rotl(m_state[3], 45);
        return result;
    }
    // Uniform in [0, n) for n < 2^32 (Lemire's multiply-shift; the tiny bias is irrelevant here).
    std::uint64_t below(std::uint64_t n) { return ((next() >> 32) * (n & 0xffffffffull)) >> 32; }
    std::int64_t between(std::int64_t low, std::int64_t high) {
        return low + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(high - low + 1)));
    }
    // True with probability perMille / 1000.
    bool chance(unsigned perMille) { return below(1000) < perMille; }
    template <class T, std::size_t N> const T& pick(const std::array<T, N>& items) { return items[below(N)]; }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::array<std::uint64_t, 4> m_state{};
};

// Picks an index by integer weights.
template <std::size_t N> std::size_t weighted(Rng& rng, const std::array<unsigned, N>& weights) {
    unsigned total = 0;
    for (unsigned w : weights)
        total += w;
    auto roll = static_cast<unsigned>(rng.below(total));
    for (std::size_t i = 0; i < N; ++i) {
        if (roll < weights[i]) return i;
        roll -= weights[i];
    }
    return N - 1;
}

// --- text --------------------------------------------------------------------------------------

constexpr char kHex[] = "0123456789abcdef";
constexpr char kBase36[] = "0123456789abcdefghijklmnopqrstuvwxyz";

std::string hexOf(std::uint64_t bits, int digits) {
    std::string out(static_cast<std::size_t>(digits), '0');
    for (int i = digits - 1; i >= 0; --i, bits >>= 4)
        out[static_cast<std::size_t>(i)] = kHex[bits & 15];
    return out;
}

std::string randomHex(Rng& rng, int digits) {
    std::string out;
    while (static_cast<int>(out.size()) < digits)
        out += hexOf(rng.next(), std::min(16, digits - static_cast<int>(out.size())));
    return out;
}

std::string randomBase36(Rng& rng, int length) {
    std::string out;
    for (int i = 0; i < length; ++i)
        out += kBase36[rng.below(36)];
    return out;
}

// RFC 9562 UUIDv7 (what posthog-js and posthog-node send as `uuid`): 48 bits of epoch millis.
std::string uuidV7(std::int64_t millis, std::uint64_t r1, std::uint64_t r2) {
    const auto ms = static_cast<std::uint64_t>(millis);
    return hexOf(ms >> 16, 8) + "-" + hexOf(ms & 0xffff, 4) + "-7" + hexOf(r1 >> 52, 3) + "-" +
           hexOf(0x8000 | ((r1 >> 32) & 0x3fff), 4) + "-" + hexOf(r2, 12);
}

// Draws its two random words in a fixed order (argument evaluation order is unspecified).
std::string uuidV7(std::int64_t millis, Rng& rng) {
    const std::uint64_t r1 = rng.next();
    const std::uint64_t r2 = rng.next();
    return uuidV7(millis, r1, r2);
}

std::string uuidV4(std::uint64_t r1, std::uint64_t r2) {
    return hexOf(r1 >> 32, 8) + "-" + hexOf((r1 >> 16) & 0xffff, 4) + "-4" + hexOf(r1 & 0xfff, 3) + "-" +
           hexOf(0x8000 | ((r2 >> 48) & 0x3fff), 4) + "-" + hexOf(r2, 12);
}

std::string uuidV4(Rng& rng) {
    const std::uint64_t r1 = rng.next();
    const std::uint64_t r2 = rng.next();
    return uuidV4(r1, r2);
}

// Howard Hinnant's civil_from_days: no time zone database, no locale.
std::string isoTime(std::int64_t millis) {
    std::int64_t days = millis / 86400000;
    std::int64_t msOfDay = millis % 86400000;
    days += 719468;
    const std::int64_t era = days / 146097;
    const std::int64_t doe = days - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t day = doy - (153 * mp + 2) / 5 + 1;
    const std::int64_t month = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ",
                  static_cast<long long>(year), static_cast<long long>(month), static_cast<long long>(day),
                  static_cast<long long>(msOfDay / 3600000), static_cast<long long>(msOfDay / 60000 % 60),
                  static_cast<long long>(msOfDay / 1000 % 60), static_cast<long long>(msOfDay % 1000));
    return buffer;
}

// Compact JSON, as the SDKs send it (JSON.stringify). Keeps track of commas itself.
class JsonOut {
public:
    explicit JsonOut(std::string& out) : m_out(out) {}

    JsonOut& beginObject() { return open('{'); }
    JsonOut& endObject() { return close('}'); }
    JsonOut& beginArray() { return open('['); }
    JsonOut& endArray() { return close(']'); }
    JsonOut& key(std::string_view name) {
        separate();
        quoted(name);
        m_out += ':';
        m_afterKey = true;
        return *this;
    }
    JsonOut& string(std::string_view value) {
        separate();
        quoted(value);
        return *this;
    }
    JsonOut& integer(std::int64_t value) { return raw(std::to_string(value)); }
    JsonOut& boolean(bool value) { return raw(value ? "true" : "false"); }
    JsonOut& null() { return raw("null"); }
    // Money in minor units, printed with two decimals (49.90), or as an integer for zero-decimal
    // currencies (JPY).
    JsonOut& money(std::int64_t cents, bool zeroDecimal = false) {
        if (zeroDecimal) return integer(cents);
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%s%lld.%02lld", cents < 0 ? "-" : "",
                      static_cast<long long>((cents < 0 ? -cents : cents) / 100),
                      static_cast<long long>((cents < 0 ? -cents : cents) % 100));
        return raw(buffer);
    }
    JsonOut& raw(std::string_view text) {
        separate();
        m_out += text;
        return *this;
    }

    JsonOut& field(std::string_view name, std::string_view value) { return key(name).string(value); }
    JsonOut& field(std::string_view name, const char* value) { return key(name).string(value); }
    JsonOut& field(std::string_view name, const std::string& value) { return key(name).string(value); }
    JsonOut& field(std::string_view name, std::int64_t value) { return key(name).integer(value); }
    JsonOut& field(std::string_view name, int value) { return key(name).integer(value); }
    JsonOut& field(std::string_view name, bool value) { return key(name).boolean(value); }

private:
    JsonOut& open(char bracket) {
        separate();
        m_out += bracket;
        m_first.push_back(true);
        return *this;
    }
    JsonOut& close(char bracket) {
        m_out += bracket;
        m_first.pop_back();
        return *this;
    }
    void separate() {
        if (m_afterKey) {
            m_afterKey = false;
            return;
        }
        if (m_first.empty()) return;
        if (!m_first.back()) m_out += ',';
        m_first.back() = false;
    }
    void quoted(std::string_view text) {
        m_out += '"';
        for (char c : text) {
            switch (c) {
            case '"':
                m_out += "\\\"";
                break;
            case '\\':
                m_out += "\\\\";
                break;
            case '\n':
                m_out += "\\n";
                break;
            case '\t':
                m_out += "\\t";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char escaped[8];
                    std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
                    m_out += escaped;
                } else {
                    m_out += c;
                }
            }
        }
        m_out += '"';
    }

    std::string& m_out;
    std::vector<bool> m_first;
    bool m_afterKey = false;
};

// --- the shop ----------------------------------------------------------------------------------

constexpr std::string_view kHost = "shop.example.com";
constexpr std::int64_t kStartMillis = 1714521600000; // 2024-05-01T00:00:00Z

struct Product {
    std::string_view sku;
    std::string_view name;
    std::string_view category;
    std::string_view slug;
    std::int64_t cents;
};

constexpr std::array<Product, 24> kProducts{{
    {"TSHIRT-ORG-M-BLK", "Organic T-Shirt, black, M", "apparel", "organic-t-shirt", 2900},
    {"TSHIRT-ORG-L-WHT", "Organic T-Shirt, white, L", "apparel", "organic-t-shirt", 2900},
    {"HOODIE-ZIP-M-GRY", "Zip Hoodie, grey, M", "apparel", "zip-hoodie", 6900},
    {"CAP-5P-NVY", "Five-panel cap, navy", "accessories", "five-panel-cap", 2400},
    {"MUG-CREME-350", "Crème Brûlée Mug 350 ml", "kitchen", "creme-brulee-mug", 1600},
    {"MUG-ENAMEL-WHT", "Enamel mug", "kitchen", "enamel-mug", 1450},
    {"BOTTLE-STEEL-750", "Steel bottle 750 ml", "outdoor", "steel-bottle", 3200},
    {"TOTE-CANVAS-NAT", "Canvas tote bag", "accessories", "canvas-tote", 1900},
    {"SOCKS-WOOL-3PK", "Merino socks, 3-pack", "apparel", "merino-socks", 2700},
    {"NOTEBOOK-A5-DOT", "Notebook A5, dotted", "stationery", "notebook-a5", 1250},
    {"PEN-FOUNT-EF", "Fountain pen EF", "stationery", "fountain-pen", 4500},
    {"INK-BLUE-50", "Ink, royal blue, 50 ml", "stationery", "ink-royal-blue", 990},
    {"BACKPACK-ROLL-25", "Roll-top backpack 25 l", "outdoor", "roll-top-backpack", 11900},
    {"HEADPH-BT-ANC", "Bluetooth headphones ANC", "electronics", "anc-headphones", 17900},
    {"CHARGER-USB-C-65", "USB-C charger 65 W", "electronics", "usb-c-charger", 3900},
    {"CABLE-USB-C-2M", "USB-C cable 2 m", "electronics", "usb-c-cable", 1290},
    {"CANDLE-SOJA-CEDAR", "Soy candle, cedar", "home", "soy-candle", 2200},
    {"TEA-SENCHA-100", "Sencha tea 100 g — organic", "food", "sencha-tea", 1150},
    {"COFFEE-ETH-250", "Coffee Ethiopia Yirgacheffe 250 g", "food", "coffee-ethiopia", 1490},
    {"CHOC-70-100", "Dark chocolate 70 %", "food", "dark-chocolate", 450},
    {"GIFT-CARD-50", "Gift card 50", "gift_cards", "gift-card", 5000},
    {"POSTER-A2-WAVE", "Poster A2 « Wave »", "home", "poster-wave", 3500},
    {"PLANT-POT-M", "Ceramic plant pot, M", "home", "plant-pot", 2800},
    {"BLANKET-WOOL", "Wool blanket", "home", "wool-blanket", 8900},
}};

constexpr std::array<std::string_view, 14> kCurrencies{"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD",
                                                       "SEK", "NOK", "DKK", "PLN", "BRL", "INR", "SGD"};
constexpr std::array<unsigned, 14> kCurrencyWeights{450, 250, 100, 30, 30, 40, 30,
                                                    10,  10,  10,  10, 10, 10, 10};
constexpr std::array<std::string_view, 7> kPaymentMethods{"card",       "paypal", "apple_pay", "google_pay",
                                                          "sepa_debit", "ideal",  "klarna"};
constexpr std::array<unsigned, 7> kPaymentMethodWeights{550, 150, 120, 60, 50, 30, 40};
constexpr std::array<std::string_view, 6> kCoupons{"SPRING10", "WELCOME15", "FREESHIP",
                                                   "VIP-2024", "BF50",      "NEWSLETTER5"};

constexpr std::array<std::string_view, 5> kPlans{"free", "starter", "pro", "team", "enterprise"};
constexpr std::array<std::string_view, 5> kSignupMethods{"email", "google", "github", "microsoft", "sso"};
constexpr std::array<std::string_view, 8> kEmailDomains{"gmail.com",  "outlook.com",     "proton.me",
                                                        "acme.io",    "example.co.uk",   "yahoo.com",
                                                        "icloud.com", "mail.startup.dev"};
constexpr std::array<std::string_view, 5> kUtmSources{"newsletter", "google", "twitter", "linkedin",
                                                      "podcast"};
constexpr std::array<std::string_view, 4> kUtmCampaigns{"spring_sale", "launch_week", "retargeting_q2",
                                                        "brand"};
constexpr std::array<std::string_view, 5> kStepNames{"cart", "shipping", "payment", "review", "confirmation"};
constexpr std::array<std::string_view, 3> kShippingMethods{"standard", "express", "pickup"};

struct Browser {
    std::string_view browser;
    int version;
    std::string_view os;
    std::string_view osVersion;
    std::string_view deviceType;
    std::string_view userAgent;
    int screenWidth;
    int screenHeight;
};

constexpr std::array<Browser, 6> kBrowsers{{
    {"Chrome", 124, "Mac OS X", "10.15.7", "Desktop",
     "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 "
     "Safari/537.36",
     1728, 1117},
    {"Chrome", 123, "Windows", "10.0", "Desktop",
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 "
     "Safari/537.36",
     1920, 1080},
    {"Safari", 17, "Mac OS X", "14.4.1", "Desktop",
     "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4.1 "
     "Safari/605.1.15",
     1512, 982},
    {"Mobile Safari", 17, "iOS", "17.4.1", "Mobile",
     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4.1 Mobile/15E148 Safari/604.1",
     390, 844},
    {"Firefox", 125, "Linux", "", "Desktop",
     "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", 2560, 1440},
    {"Chrome", 124, "Android", "14.0", "Mobile",
     "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Mobile "
     "Safari/537.36",
     412, 915},
}};

constexpr std::array<std::string_view, 4> kLanguages{"en-US", "de-DE", "en-GB", "fr-FR"};
constexpr std::array<std::string_view, 4> kTimezones{"America/New_York", "Europe/Berlin", "Europe/London",
                                                     "Europe/Paris"};
constexpr std::array<std::string_view, 5> kReferrers{"$direct", "https://www.google.com/", "https://t.co/",
                                                     "https://news.ycombinator.com/",
                                                     "https://www.linkedin.com/"};

// One shopper (or API user), stable across their events.
struct Person {
    std::uint64_t index = 0;
    std::string userId;    // "user_104233"
    std::string anonId;    // posthog-js anonymous distinct id (UUIDv7 of the first visit)
    std::string segmentId; // analytics.js anonymousId (UUIDv4)
    bool identified = false;
    const Browser* browser = nullptr;
    std::string_view language;
    std::string_view timezone;
    std::string_view initialReferrer;
};

Person personOf(std::uint64_t index, std::uint64_t seed) {
    const std::uint64_t h = hashOf(index, seed);
    Person person;
    person.index = index;
    person.userId = "user_" + std::to_string(100000 + index);
    const std::int64_t firstSeen = kStartMillis - static_cast<std::int64_t>(h % (30ull * 86400000));
    person.anonId = uuidV7(firstSeen, hashOf(index, seed + 1), hashOf(index, seed + 2));
    person.segmentId = uuidV4(hashOf(index, seed + 3), hashOf(index, seed + 4));
    person.identified = (h >> 40) % 100 < 55;
    person.browser = &kBrowsers[(h >> 8) % kBrowsers.size()];
    person.language = kLanguages[(h >> 16) % kLanguages.size()];
    person.timezone = kTimezones[(h >> 24) % kTimezones.size()];
    person.initialReferrer = kReferrers[(h >> 32) % kReferrers.size()];
    return person;
}

// The page an event happened on (posthog-js $current_url, Segment context.page).
struct Page {
    std::string path;
    std::string search;
    std::string url;
    std::string title;
    std::string referrer;
    std::string_view type; // page_viewed.page_type
};

Page pageFor(Rng& rng, std::string_view kind, const Product* product) {
    Page page;
    page.type = kind;
    if (kind == "home") {
        page.path = "/";
        page.title = "Example Shop — sustainable everyday things";
    } else if (kind == "product") {
        page.path = "/products/" + std::string(product->slug);
        page.title = std::string(product->name) + " | Example Shop";
    } else if (kind == "category") {
        page.path = "/category/" + std::string(product->category);
        page.title = std::string(product->category) + " | Example Shop";
    } else if (kind == "cart") {
        page.path = "/cart";
        page.title = "Your cart | Example Shop";
    } else if (kind == "checkout") {
        page.path = "/checkout/" + std::string(rng.pick(kStepNames));
        page.title = "Checkout | Example Shop";
    } else if (kind == "account") {
        page.path = "/account/orders";
        page.title = "Your orders | Example Shop";
    } else {
        page.path = "/blog/how-we-source-" + std::string(product->slug);
        page.title = "How we source our " + std::string(product->name);
    }
    if (rng.chance(150)) {
        const std::string_view source = rng.pick(kUtmSources);
        const std::string_view campaign = rng.pick(kUtmCampaigns);
        page.search = "?utm_source=" + std::string(source) + "&utm_campaign=" + std::string(campaign);
    }
    page.url = "https://" + std::string(kHost) + page.path + page.search;
    page.referrer =
        rng.chance(400) ? "https://" + std::string(kHost) + "/" : std::string(rng.pick(kReferrers));
    if (page.referrer == "$direct") page.referrer.clear();
    return page;
}

constexpr std::array<std::string_view, 7> kPageKinds{"home",     "product", "category", "cart",
                                                     "checkout", "account", "blog"};
constexpr std::array<unsigned, 7> kPageKindWeights{200, 350, 150, 80, 60, 60, 100};

// --- events ------------------------------------------------------------------------------------

enum class Sdk { PostHogJs, PostHogNode, SegmentJs, SegmentNode };

enum class Kind {
    PaymentCompleted,
    PageviewPostHog,
    PageviewSegment,
    PageViewed,
    CheckoutStep,
    SignupStarted,
    Autocapture,
    Identify
};

// Planted defects, each of which breaks exactly one keyword of the event's schema.
constexpr std::array<std::string_view, 17> kPaymentDefects{
    "amount_string",         "amount_zero",         "currency_lowercase",
    "currency_unknown",      "order_id_uppercase",  "order_id_missing",
    "items_empty",           "item_quantity_zero",  "item_quantity_fraction",
    "item_price_negative",   "item_extra_property", "item_sku_missing",
    "coupon_number",         "coupon_too_long",     "payment_method_unknown",
    "paid_at_not_date_time", "items_not_array"};
constexpr std::array<std::string_view, 8> kSignupDefects{"plan_missing",
                                                         "plan_unknown",
                                                         "signup_method_unknown",
                                                         "email_domain_uppercase",
                                                         "trial_ends_at_not_date_time",
                                                         "seats_zero",
                                                         "utm_source_too_long",
                                                         "marketing_opt_in_string"};
constexpr std::array<std::string_view, 8> kCheckoutDefects{
    "step_zero",       "step_too_large",          "step_string",         "step_name_unknown",
    "cart_id_pattern", "shipping_method_missing", "cart_value_negative", "item_count_fraction"};
constexpr std::array<std::string_view, 4> kPageviewPostHogDefects{
    "current_url_not_http", "screen_width_string", "pathname_relative", "title_number"};
constexpr std::array<std::string_view, 3> kPageviewSegmentDefects{"url_missing", "path_relative",
                                                                  "url_not_http"};
constexpr std::array<std::string_view, 4> kPageViewedDefects{"path_missing", "page_type_unknown",
                                                             "url_not_http", "title_too_long"};

class Generator {
public:
    Generator(std::uint64_t seed, std::size_t events)
        : m_rng(seed), m_seed(seed), m_people(std::max<std::size_t>(50, events / 8)) {}

    // Appends one line (without the newline). Returns "" for a valid planned event, "-" for an
    // unplanned one, else what was planted: "<event>:<defect>".
    std::string appendEvent(std::string& out) {
        m_now += 1 + static_cast<std::int64_t>(m_rng.below(800));
        m_person = personOf(m_rng.below(m_people), m_seed);
        m_defect = {};

        static constexpr std::array<unsigned, 8> kKindWeights{420, 160, 70, 100, 140, 90, 14, 6};
        const auto kind = static_cast<Kind>(weighted(m_rng, kKindWeights));
        // ~3% of the planned events carry one defect.
        const bool plant = m_rng.chance(31);

        JsonOut json(out);
        switch (kind) {
        case Kind::PaymentCompleted: {
            static constexpr std::array<unsigned, 4> kSdkWeights{250, 350, 150, 250};
            const auto sdk = static_cast<Sdk>(weighted(m_rng, kSdkWeights));
            const int defect = plant ? static_cast<int>(m_rng.below(kPaymentDefects.size())) : -1;
            if (defect >= 0) m_defect = kPaymentDefects[defect];
            Page page = pageFor(m_rng, "checkout", &m_rng.pick(kProducts));
            page.path = "/checkout/confirmation";
            page.url = "https://" + std::string(kHost) + page.path;
            page.title = "Thank you for your order | Example Shop";
            writeEvent(json, sdk, "payment_completed", page, [&] { paymentProperties(json, defect); });
            break;
        }
        case Kind::PageviewPostHog: {
            const int defect = plant ? static_cast<int>(m_rng.below(kPageviewPostHogDefects.size())) : -1;
            if (defect >= 0) m_defect = kPageviewPostHogDefects[defect];
            Page page = randomPage();
            PostHogJsOverrides overrides;
            if (m_defect == "current_url_not_http") page.url = "about:blank";
            if (m_defect == "pathname_relative") page.path.erase(0, 1);
            overrides.screenWidthAsString = m_defect == "screen_width_string";
            writePostHogJs(json, "$pageview", page, overrides, [&] {
                if (m_defect == "title_number")
                    json.field("title", 404);
                else
                    json.field("title", page.title);
            });
            break;
        }
        case Kind::PageviewSegment: {
            const int defect = plant ? static_cast<int>(m_rng.below(kPageviewSegmentDefects.size())) : -1;
            if (defect >= 0) m_defect = kPageviewSegmentDefects[defect];
            const Page page = randomPage();
            writeSegmentJs(json, "page", {}, page, [&] {
                json.field("name", std::string(page.type));
                json.field("path", m_defect == "path_relative" ? page.path.substr(1) : page.path);
                json.field("referrer", page.referrer);
                json.field("search", page.search);
                json.field("title", page.title);
                if (m_defect == "url_not_http")
                    json.field("url", "file:///Users/dev/shop/index.html");
                else if (m_defect != "url_missing")
                    json.field("url", page.url);
            });
            break;
        }
        case Kind::PageViewed: {
            const int defect = plant ? static_cast<int>(m_rng.below(kPageViewedDefects.size())) : -1;
            if (defect >= 0) m_defect = kPageViewedDefects[defect];
            const Page page = randomPage();
            writeSegmentJs(json, "track", "page_viewed", page, [&] {
                json.field("url", m_defect == "url_not_http" ? std::string("chrome-extension://abc/page.html")
                                                             : page.url);
                if (m_defect != "path_missing") json.field("path", page.path);
                json.field("title", m_defect == "title_too_long" ? std::string(520, 'x') : page.title);
                json.field("referrer", page.referrer);
                json.field("search", page.search);
                json.field("page_type",
                           m_defect == "page_type_unknown" ? std::string_view("landing") : page.type);
            });
            break;
        }
        case Kind::CheckoutStep: {
            const auto sdk = m_rng.chance(600) ? Sdk::PostHogJs : Sdk::SegmentJs;
            const int defect = plant ? static_cast<int>(m_rng.below(kCheckoutDefects.size())) : -1;
            if (defect >= 0) m_defect = kCheckoutDefects[defect];
            int step = static_cast<int>(m_rng.between(1, 5));
            if (m_defect == "shipping_method_missing") step = static_cast<int>(m_rng.between(3, 5));
            Page page = pageFor(m_rng, "checkout", &m_rng.pick(kProducts));
            page.path = "/checkout/" + std::string(kStepNames[step - 1]);
            page.url = "https://" + std::string(kHost) + page.path;
            writeEvent(json, sdk, "checkout_step", page, [&] { checkoutProperties(json, step); });
            break;
        }
        case Kind::SignupStarted: {
            static constexpr std::array<unsigned, 4> kSdkWeights{500, 150, 200, 150};
            const auto sdk = static_cast<Sdk>(weighted(m_rng, kSdkWeights));
            const int defect = plant ? static_cast<int>(m_rng.below(kSignupDefects.size())) : -1;
            if (defect >= 0) m_defect = kSignupDefects[defect];
            Page page = pageFor(m_rng, "home", nullptr);
            page.path = "/signup";
            page.url = "https://" + std::string(kHost) + page.path + page.search;
            page.title = "Create your account | Example Shop";
            writeEvent(json, sdk, "signup_started", page, [&] { signupProperties(json); });
            break;
        }
        case Kind::Autocapture: {
            const Page page = randomPage();
            writePostHogJs(json, "$autocapture", page, {}, [&] {
                json.field("$event_type", "click");
                json.field("$ce_version", 1);
                json.field("$el_text", "Add to cart");
                json.field(
                    "$elements_chain",
                    "button.btn.btn-primary:attr__class=\"btn btn-primary\"attr__type=\"submit\"nth-child="
                    "\"2\"nth-of-type=\"1\"text=\"Add to cart\";form.product-form:nth-child=\"3\";div."
                    "container:nth-child=\"1\";body:nth-child=\"2\"");
            });
            return "-";
        }
        case Kind::Identify: {
            const Page page = randomPage();
            m_person.identified = true;
            writePostHogJs(json, "$identify", page, {},
                           [&] { json.field("$anon_distinct_id", m_person.anonId); });
            return "-";
        }
        }
        if (m_defect.empty()) return {};
        static constexpr std::array<std::string_view, 8> kNames{
            "payment_completed", "$pageview",      "$pageview",    "page_viewed",
            "checkout_step",     "signup_started", "$autocapture", "$identify"};
        return std::string(kNames[static_cast<std::size_t>(kind)]) + ":" + std::string(m_defect);
    }

private:
    struct PostHogJsOverrides {
        bool screenWidthAsString = false;
    };

    Page randomPage() {
        const auto kind = kPageKinds[weighted(m_rng, kPageKindWeights)];
        return pageFor(m_rng, kind, &m_rng.pick(kProducts));
    }

    template <class Props>
    void writeEvent(JsonOut& json, Sdk sdk, std::string_view name, const Page& page, Props props) {
        switch (sdk) {
        case Sdk::PostHogJs:
            writePostHogJs(json, name, page, {}, props);
            break;
        case Sdk::PostHogNode:
            writePostHogNode(json, name, props);
            break;
        case Sdk::SegmentJs:
            writeSegmentJs(json, "track", name, page, props);
            break;
        case Sdk::SegmentNode:
            writeSegmentNode(json, name, props);
            break;
        }
    }

    // posthog-js (/e/): the event's own properties merged with everything the SDK adds.
    template <class Props>
    void writePostHogJs(JsonOut& json, std::string_view name, const Page& page, PostHogJsOverrides overrides,
                        Props props) {
        const Browser& browser = *m_person.browser;
        const std::string distinctId = m_person.identified ? m_person.userId : m_person.anonId;
        const std::uint64_t sessionKey =
            m_person.index * 1000003 + static_cast<std::uint64_t>(m_now / 1800000);
        const std::string sessionId =
            uuidV7(m_now - static_cast<std::int64_t>(hashOf(sessionKey, m_seed) % 1800000),
                   hashOf(sessionKey, m_seed + 5), hashOf(sessionKey, m_seed + 6));
        json.beginObject();
        json.field("uuid", uuidV7(m_now, m_rng));
        json.field("event", name);
        json.key("properties").beginObject();
        json.field("$os", browser.os);
        if (!browser.osVersion.empty()) json.field("$os_version", browser.osVersion);
        json.field("$browser", browser.browser);
        json.field("$device_type", browser.deviceType);
        json.field("$timezone", m_person.timezone);
        json.field("$current_url", page.url);
        json.field("$host", kHost);
        json.field("$pathname", page.path);
        json.field("$raw_user_agent", browser.userAgent);
        json.field("$browser_version", browser.version);
        json.field("$browser_language", m_person.language);
        json.field("$browser_language_prefix", m_person.language.substr(0, 2));
        if (overrides.screenWidthAsString)
            json.field("$screen_width", std::to_string(browser.screenWidth));
        else
            json.field("$screen_width", browser.screenWidth);
        json.field("$screen_height", browser.screenHeight);
        json.field("$viewport_width", browser.screenWidth);
        json.field("$viewport_height", browser.screenHeight - 158);
        json.field("$lib", "web");
        json.field("$lib_version", "1.130.2");
        json.field("$insert_id", randomBase36(m_rng, 16));
        json.key("$time").raw(std::to_string(m_now / 1000) + "." + threeDigits(m_now % 1000));
        json.field("distinct_id", distinctId);
        json.field("$device_id", m_person.anonId);
        if (m_person.identified) json.field("$user_id", m_person.userId);
        json.field("$initial_referrer", m_person.initialReferrer);
        json.field("$initial_referring_domain", m_person.initialReferrer == "$direct"
                                                    ? std::string("$direct")
                                                    : domainOf(m_person.initialReferrer));
        json.field("$referrer", page.referrer.empty() ? std::string("$direct") : page.referrer);
        json.field("$referring_domain",
                   page.referrer.empty() ? std::string("$direct") : domainOf(page.referrer));
        json.field("$session_id", sessionId);
        json.field("$window_id",
                   uuidV7(m_now - 60000, hashOf(sessionKey, m_seed + 7), hashOf(sessionKey, m_seed + 8)));
        json.field("$is_identified", m_person.identified);
        json.field("$process_person_profile", true);
        json.key("$active_feature_flags")
            .beginArray()
            .string("new-checkout")
            .string("pricing-page-v2")
            .endArray();
        json.field("$feature/new-checkout", true);
        json.field("$feature/pricing-page-v2", m_person.index % 2 == 0 ? "test" : "control");
        json.field("token", "phc_k3Yq8VbM2nTwXr5pL9sZa7UdHc4eJfG1iOy6QxWv0Bn");
        json.field("$configured_session_timeout_ms", 1800000);
        props();
        json.endObject();
        if (name == "$identify") {
            json.key("$set").beginObject();
            json.field("email", "shopper" + std::to_string(m_person.index) + "@example.com");
            json.endObject();
        }
        json.field("timestamp", isoTime(m_now));
        json.endObject();
    }

    // posthog-node capture(): server-side, identified user, few SDK properties.
    template <class Props> void writePostHogNode(JsonOut& json, std::string_view name, Props props) {
        json.beginObject();
        json.field("distinct_id", m_person.userId);
        json.field("event", name);
        json.key("properties").beginObject();
        props();
        json.field("$lib", "posthog-node");
        json.field("$lib_version", "4.2.1");
        json.field("$geoip_disable", true);
        json.endObject();
        json.field("type", "capture");
        json.field("library", "posthog-node");
        json.field("library_version", "4.2.1");
        json.field("timestamp", isoTime(m_now));
        json.field("uuid", uuidV7(m_now, m_rng));
        json.endObject();
    }

    // Segment analytics.js (analytics-next) track or page call.
    template <class Props>
    void writeSegmentJs(JsonOut& json, std::string_view type, std::string_view name, const Page& page,
                        Props props) {
        const Browser& browser = *m_person.browser;
        json.beginObject();
        json.field("timestamp", isoTime(m_now));
        json.key("integrations").beginObject().endObject();
        if (type == "track") json.field("event", name);
        json.field("type", type);
        if (type == "page") json.field("name", std::string(page.type));
        json.key("properties").beginObject();
        props();
        json.endObject();
        json.key("context").beginObject();
        json.key("page").beginObject();
        json.field("path", page.path);
        json.field("referrer", page.referrer);
        json.field("search", page.search);
        json.field("title", page.title);
        json.field("url", page.url);
        json.endObject();
        json.field("userAgent", browser.userAgent);
        json.key("userAgentData").beginObject();
        json.key("brands").beginArray();
        json.beginObject()
            .field("brand", browser.browser)
            .field("version", std::to_string(browser.version))
            .endObject();
        json.beginObject().field("brand", "Not-A.Brand").field("version", "99").endObject();
        json.endArray();
        json.field("mobile", browser.deviceType == "Mobile");
        json.field("platform", browser.os);
        json.endObject();
        json.field("locale", m_person.language);
        json.key("library")
            .beginObject()
            .field("name", "analytics.js")
            .field("version", "npm:next-1.70.0")
            .endObject();
        json.field("timezone", m_person.timezone);
        json.endObject();
        json.field("messageId", "ajs-next-" + randomHex(m_rng, 32));
        json.field("anonymousId", m_person.segmentId);
        if (m_person.identified) json.field("userId", m_person.userId);
        json.field("writeKey", "9mRvXq2KpT7sLw4ZyBn8");
        json.field("sentAt", isoTime(m_now + 40 + static_cast<std::int64_t>(m_rng.below(400))));
        json.key("_metadata").beginObject();
        json.key("bundled").beginArray().string("Segment.io").endArray();
        json.key("unbundled").beginArray().endArray();
        json.key("bundledIds").beginArray().endArray();
        json.endObject();
        json.endObject();
    }

    // Segment analytics-node track().
    template <class Props> void writeSegmentNode(JsonOut& json, std::string_view name, Props props) {
        json.beginObject();
        json.field("type", "track");
        json.field("event", name);
        json.key("properties").beginObject();
        props();
        json.endObject();
        json.field("userId", m_person.userId);
        json.field("messageId", "node-next-" + std::to_string(m_now) + "-" + uuidV4(m_rng));
        json.field("timestamp", isoTime(m_now));
        json.key("context").beginObject();
        json.key("library")
            .beginObject()
            .field("name", "@segment/analytics-node")
            .field("version", "2.1.2")
            .endObject();
        json.endObject();
        json.key("integrations").beginObject().endObject();
        json.key("_metadata").beginObject().field("jsRuntime", "node").endObject();
        json.endObject();
    }

    void paymentProperties(JsonOut& json, int defect) {
        const std::string_view d = defect >= 0 ? kPaymentDefects[defect] : std::string_view{};
        const std::string_view currency = kCurrencies[weighted(m_rng, kCurrencyWeights)];
        const bool zeroDecimal = currency == "JPY";
        const int itemCount =
            m_rng.chance(150) ? static_cast<int>(m_rng.between(4, 8)) : static_cast<int>(m_rng.between(1, 3));
        const int defectItem = static_cast<int>(m_rng.below(static_cast<std::uint64_t>(itemCount)));

        // Items first, so the amount can be their sum.
        std::string itemsText;
        JsonOut items(itemsText);
        std::int64_t subtotal = 0;
        if (d == "items_not_array") {
            const Product& product = m_rng.pick(kProducts);
            items.beginObject()
                .field("sku", product.sku)
                .field("quantity", 1)
                .key("price")
                .money(product.cents, zeroDecimal);
            items.endObject();
            subtotal = product.cents;
        } else {
            items.beginArray();
            for (int i = 0; d != "items_empty" && i < itemCount; ++i) {
                const Product& product = m_rng.pick(kProducts);
                const std::int64_t quantity = m_rng.chance(800) ? 1 : m_rng.between(2, 4);
                const std::int64_t price = zeroDecimal ? product.cents * 3 / 2 : product.cents;
                subtotal += quantity * price;
                const bool hit = i == defectItem;
                items.beginObject();
                if (!(hit && d == "item_sku_missing")) items.field("sku", product.sku);
                if (m_rng.chance(600)) items.field("name", product.name);
                if (m_rng.chance(400)) items.field("category", product.category);
                if (hit && d == "item_quantity_zero")
                    items.field("quantity", 0);
                else if (hit && d == "item_quantity_fraction")
                    items.key("quantity").raw("1.5");
                else
                    items.field("quantity", quantity);
                items.key("price").money(hit && d == "item_price_negative" ? -price : price, zeroDecimal);
                if (hit && d == "item_extra_property") items.key("discount").money(500, zeroDecimal);
                items.endObject();
            }
            items.endArray();
        }

        const std::int64_t shipping = subtotal >= 5000 ? 0 : (zeroDecimal ? 600 : 490);
        const std::int64_t tax = currency == "USD" ? subtotal * 7 / 100 : 0;

        if (d == "order_id_uppercase") {
            std::string id = randomHex(m_rng, 12);
            const auto position = m_rng.below(12);
            id[position] = "ABCDEF"[m_rng.below(6)];
            json.field("order_id", "ord_" + id);
        } else if (d != "order_id_missing") {
            json.field("order_id", "ord_" + randomHex(m_rng, 12));
        }
        if (d == "amount_string") {
            std::string text;
            JsonOut(text).money(subtotal + shipping + tax, zeroDecimal);
            json.field("amount", text);
        } else {
            json.key("amount").money(d == "amount_zero" ? 0 : subtotal + shipping + tax, zeroDecimal);
        }
        if (d == "currency_lowercase")
            json.field("currency",
                       std::string{static_cast<char>(currency[0] + 32), static_cast<char>(currency[1] + 32),
                                   static_cast<char>(currency[2] + 32)});
        else
            json.field("currency", d == "currency_unknown" ? std::string_view("BTC") : currency);
        json.field("payment_method", d == "payment_method_unknown"
                                         ? std::string_view("crypto")
                                         : kPaymentMethods[weighted(m_rng, kPaymentMethodWeights)]);
        json.key("items").raw(itemsText);
        if (d == "coupon_number")
            json.field("coupon", 10);
        else if (d == "coupon_too_long")
            json.field("coupon", "SUMMER-SALE-2024-EXTRA-DISCOUNT-FOR-NEWSLETTER");
        else if (m_rng.chance(100))
            json.key("coupon").null();
        else if (m_rng.chance(200))
            json.field("coupon", m_rng.pick(kCoupons));
        json.key("tax").money(tax, zeroDecimal);
        json.key("shipping").money(shipping, zeroDecimal);
        const std::int64_t paidAt = m_now - static_cast<std::int64_t>(m_rng.below(3000));
        if (d == "paid_at_not_date_time") {
            // A US-style local time: not RFC 3339 under any reading.
            const std::string iso = isoTime(paidAt);
            json.field("paid_at", iso.substr(5, 2) + "/" + iso.substr(8, 2) + "/" + iso.substr(0, 4) + " " +
                                      iso.substr(11, 8));
        } else {
            json.field("paid_at", isoTime(paidAt));
        }
        if (m_rng.chance(300)) json.field("is_first_purchase", true);
    }

    void checkoutProperties(JsonOut& json, int step) {
        const std::string_view d = m_defect;
        if (d == "step_zero")
            json.field("step", 0);
        else if (d == "step_too_large")
            json.field("step", 6);
        else if (d == "step_string")
            json.field("step", std::to_string(step));
        else
            json.field("step", step);
        json.field("step_name",
                   d == "step_name_unknown" ? std::string_view("shipment") : kStepNames[step - 1]);
        json.field("cart_id", d == "cart_id_pattern" ? "cart-" + std::to_string(m_rng.below(1000000000))
                                                     : "cart_" + randomHex(m_rng, 16));
        const std::int64_t itemCount = m_rng.between(1, 6);
        json.key("cart_value")
            .money(d == "cart_value_negative" ? -1999 : itemCount * 2350 + m_rng.between(0, 999));
        if (d == "item_count_fraction")
            json.key("item_count").raw("2.5");
        else
            json.field("item_count", itemCount);
        json.field("currency", kCurrencies[weighted(m_rng, kCurrencyWeights)]);
        if (step >= 3 && d != "shipping_method_missing") {
            if (m_rng.chance(50))
                json.key("shipping_method").null();
            else
                json.field("shipping_method", m_rng.pick(kShippingMethods));
        }
    }

    void signupProperties(JsonOut& json) {
        const std::string_view d = m_defect;
        const std::string_view plan =
            kPlans[weighted(m_rng, std::array<unsigned, 5>{500, 150, 200, 100, 50})];
        if (d == "plan_unknown")
            json.field("plan", "premium");
        else if (d != "plan_missing")
            json.field("plan", plan);
        json.field("signup_method",
                   d == "signup_method_unknown" ? std::string_view("facebook") : m_rng.pick(kSignupMethods));
        if (d == "email_domain_uppercase")
            json.field("email_domain", "Gmail.com");
        else if (m_rng.chance(700))
            json.field("email_domain", m_rng.pick(kEmailDomains));
        if (m_rng.chance(200))
            json.key("referrer").null();
        else
            json.field("referrer", std::string(m_rng.pick(kReferrers)));
        if (d == "utm_source_too_long")
            json.field("utm_source", "partner_affiliate_network_" + std::string(50, 'q'));
        else if (m_rng.chance(300))
            json.field("utm_source", m_rng.pick(kUtmSources));
        if (m_rng.chance(300)) json.field("utm_campaign", m_rng.pick(kUtmCampaigns));
        if (d == "trial_ends_at_not_date_time")
            json.field("trial_ends_at", "in 14 days");
        else if (plan != "free")
            json.field("trial_ends_at", isoTime(m_now + 14 * 86400000));
        if (d == "marketing_opt_in_string")
            json.field("marketing_opt_in", "yes");
        else
            json.field("marketing_opt_in", m_rng.chance(400));
        if (d == "seats_zero")
            json.field("seats", 0);
        else if (plan == "team" || plan == "enterprise")
            json.field("seats", m_rng.between(2, 250));
    }

    static std::string threeDigits(std::int64_t millis) {
        char buffer[8];
        std::snprintf(buffer, sizeof buffer, "%03lld", static_cast<long long>(millis));
        return buffer;
    }

    static std::string domainOf(std::string_view url) {
        auto start = url.find("://");
        start = start == std::string_view::npos ? 0 : start + 3;
        const auto end = url.find('/', start);
        return std::string(
            url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    }

    Rng m_rng;
    std::uint64_t m_seed;
    std::uint64_t m_people;
    std::int64_t m_now = kStartMillis;
    Person m_person;
    std::string_view m_defect;
};

} // namespace

GeneratedCorpus generateCorpus(std::size_t events, std::uint64_t seed) {
    GeneratedCorpus corpus;
    corpus.text.reserve(events * 1100);
    corpus.truth.seed = seed;
    corpus.truth.events = events;
    Generator generator(seed, events);
    for (std::size_t i = 0; i < events; ++i) {
        std::string defect = generator.appendEvent(corpus.text);
        corpus.text += '\n';
        if (defect == "-") {
            ++corpus.truth.unplanned;
        } else if (defect.empty()) {
            ++corpus.truth.valid;
        } else {
            ++corpus.truth.invalid;
            corpus.truth.invalidLines.push_back(i + 1);
            corpus.truth.defects.push_back(std::move(defect));
        }
    }
    return corpus;
}

std::string truthToJson(const CorpusTruth& truth) {
    nlohmann::json json = {{"generator", "pipescope bench_pipeline"},
                           {"seed", truth.seed},
                           {"events", truth.events},
                           {"valid", truth.valid},
                           {"invalid", truth.invalid},
                           {"unplanned", truth.unplanned},
                           {"invalid_lines", truth.invalidLines},
                           {"defects", truth.defects}};
    return json.dump(1) + "\n";
}

CorpusTruth truthFromJson(const std::string& text) {
    try {
        const auto json = nlohmann::json::parse(text);
        CorpusTruth truth;
        truth.seed = json.at("seed").get<std::uint64_t>();
        truth.events = json.at("events").get<std::size_t>();
        truth.valid = json.at("valid").get<std::size_t>();
        truth.invalid = json.at("invalid").get<std::size_t>();
        truth.unplanned = json.at("unplanned").get<std::size_t>();
        truth.invalidLines = json.at("invalid_lines").get<std::vector<std::uint64_t>>();
        truth.defects = json.at("defects").get<std::vector<std::string>>();
        return truth;
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(std::string("corpus meta file: ") + e.what());
    }
}

} // namespace pipescope::bench
