#include "store/event_codec.h"

#include <stdexcept>
#include <vector>

#include <zdict.h>
#include <zstd.h>

namespace pipescope::store {

namespace {
// Level 3 costs the same as level 1 with a dictionary (measured on the bench corpus, 200k
// events: 0.65 s either way) and is a little smaller.
constexpr int kLevel = 3;
} // namespace

EventCompressor::EventCompressor() : m_cctx(ZSTD_createCCtx()) {
    if (!m_cctx) throw std::bad_alloc();
    ZSTD_CCtx_setParameter(m_cctx, ZSTD_c_compressionLevel, kLevel);
    // The frame's own size is in the row (the BLOB); no checksum: SQLite pages are the unit of
    // integrity here, and a damaged frame fails to decode anyway.
    ZSTD_CCtx_setParameter(m_cctx, ZSTD_c_contentSizeFlag, 1);
}

EventCompressor::~EventCompressor() {
    ZSTD_freeCDict(m_cdict);
    ZSTD_freeCCtx(m_cctx);
}

void EventCompressor::useDictionary(std::uint32_t id, std::string bytes) {
    ZSTD_CDict* cdict = ZSTD_createCDict(bytes.data(), bytes.size(), kLevel);
    if (!cdict) throw std::runtime_error("cannot load the capture's compression dictionary " + std::to_string(id));
    ZSTD_freeCDict(m_cdict);
    m_cdict = cdict;
    m_dictionaryId = id;
    m_dictionary = std::move(bytes);
    m_trainingDone = true;
    m_samples = {};
    m_sampleSizes = {};
}

void EventCompressor::train() {
    m_trainingDone = true;
    std::string dictionary(kDictionaryBytes, '\0');
    const std::size_t size = ZDICT_trainFromBuffer(dictionary.data(), dictionary.size(), m_samples.data(),
                                                   m_sampleSizes.data(), static_cast<unsigned>(m_sampleSizes.size()));
    m_samples = {};
    m_sampleSizes = {};
    // Too few or too uniform samples: carry on without one (every row says which codec it used).
    if (ZDICT_isError(size)) return;
    dictionary.resize(size);
    const std::uint32_t id = ZDICT_getDictID(dictionary.data(), dictionary.size());
    if (id == 0) return;
    useDictionary(id, std::move(dictionary));
}

void EventCompressor::encode(std::string_view raw, std::string_view properties, EncodedEvent& out) {
    if (!m_trainingDone) {
        m_samples.append(properties);
        m_samples.append(raw);
        m_sampleSizes.push_back(properties.size() + raw.size());
        if (m_sampleSizes.size() >= kTrainingEvents || m_samples.size() >= kTrainingBytes) train();
    }
    // Compressed into a scratch buffer and copied out at its size: the body crosses to the
    // writer thread, which frees it, and a small exact allocation is cheap to free there.
    const std::size_t bound = ZSTD_compressBound(properties.size() + raw.size()) + 64;
    if (m_scratch.size() < bound) m_scratch.resize(bound);
    ZSTD_CCtx_reset(m_cctx, ZSTD_reset_session_only);
    ZSTD_CCtx_refCDict(m_cctx, m_cdict); // null: none
    ZSTD_CCtx_setPledgedSrcSize(m_cctx, properties.size() + raw.size());
    ZSTD_outBuffer output{m_scratch.data(), m_scratch.size(), 0};
    const auto feed = [&](std::string_view input, ZSTD_EndDirective directive) {
        ZSTD_inBuffer in{input.data(), input.size(), 0};
        std::size_t remaining = 0;
        do {
            remaining = ZSTD_compressStream2(m_cctx, &output, &in, directive);
            if (ZSTD_isError(remaining))
                throw std::runtime_error(std::string("cannot compress an event: ") + ZSTD_getErrorName(remaining));
        } while (remaining != 0 || in.pos < in.size);
    };
    feed(properties, ZSTD_e_flush); // the properties end a block
    feed(raw, ZSTD_e_end);
    out.body.assign(m_scratch.data(), output.pos);
    out.codec = m_cdict ? EventCodec::ZstdDictSplit : EventCodec::ZstdSplit;
}

EventDecompressor::EventDecompressor(std::string source, DictionaryLoader loader)
    : m_source(std::move(source)), m_loader(std::move(loader)), m_dctx(ZSTD_createDCtx()) {
    if (!m_dctx) throw std::bad_alloc();
}

EventDecompressor::~EventDecompressor() {
    for (auto& [id, ddict] : m_dictionaries) ZSTD_freeDDict(ddict);
    ZSTD_freeDCtx(m_dctx);
}

std::string EventDecompressor::where(std::int64_t seq) const { return m_source + ": event " + std::to_string(seq); }

ZSTD_DDict* EventDecompressor::dictionary(std::uint32_t id, std::int64_t seq) {
    if (const auto it = m_dictionaries.find(id); it != m_dictionaries.end()) return it->second;
    const std::optional<std::string> bytes = m_loader ? m_loader(id) : std::nullopt;
    if (!bytes)
        throw std::runtime_error(where(seq) + ": compressed with dictionary " + std::to_string(id) +
                                 ", which is not in the capture's `dictionaries` table");
    ZSTD_DDict* ddict = ZSTD_createDDict(bytes->data(), bytes->size());
    if (!ddict) throw std::runtime_error(where(seq) + ": dictionary " + std::to_string(id) + " cannot be loaded");
    m_dictionaries.emplace(id, ddict);
    return ddict;
}

namespace {
bool isSplit(EventCodec codec) { return codec == EventCodec::ZstdSplit || codec == EventCodec::ZstdDictSplit; }
} // namespace

std::size_t EventDecompressor::decodeWhole(EventCodec codec, std::string_view body, std::int64_t rawSize,
                                           std::int64_t seq) {
    const unsigned long long size = ZSTD_getFrameContentSize(body.data(), body.size());
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || rawSize < 0 ||
        static_cast<unsigned long long>(rawSize) > size)
        throw std::runtime_error(where(seq) + ": damaged event body (not a zstd frame of its recorded size)");
    m_buffer.resize(size);
    const std::uint32_t id = ZSTD_getDictID_fromFrame(body.data(), body.size());
    const bool withDictionary = codec == EventCodec::ZstdDict || codec == EventCodec::ZstdDictSplit;
    const std::size_t n = withDictionary ? ZSTD_decompress_usingDDict(m_dctx, m_buffer.data(), m_buffer.size(), body.data(),
                                                                      body.size(), dictionary(id, seq))
                                         : ZSTD_decompressDCtx(m_dctx, m_buffer.data(), m_buffer.size(), body.data(), body.size());
    if (ZSTD_isError(n) || n != size)
        throw std::runtime_error(where(seq) + ": damaged event body: " + (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short frame"));
    return n;
}

void EventDecompressor::decodeProperties(EventCodec codec, std::string_view body, std::int64_t rawSize,
                                         std::string& properties, std::int64_t seq) {
    if (!isSplit(codec)) {
        std::string raw;
        decode(codec, body, rawSize, raw, properties, seq);
        return;
    }
    const unsigned long long size = ZSTD_getFrameContentSize(body.data(), body.size());
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || rawSize < 0 ||
        static_cast<unsigned long long>(rawSize) > size)
        throw std::runtime_error(where(seq) + ": damaged event body (not a zstd frame of its recorded size)");
    // Decoded as a stream into a buffer the size of the properties: the first block fills it
    // and the raw bytes' blocks are never decoded.
    properties.resize(static_cast<std::size_t>(size - static_cast<unsigned long long>(rawSize)));
    ZSTD_DCtx_reset(m_dctx, ZSTD_reset_session_only);
    const std::uint32_t id = ZSTD_getDictID_fromFrame(body.data(), body.size());
    ZSTD_DCtx_refDDict(m_dctx, codec == EventCodec::ZstdDictSplit ? dictionary(id, seq) : nullptr);
    ZSTD_inBuffer in{body.data(), body.size(), 0};
    ZSTD_outBuffer out{properties.data(), properties.size(), 0};
    while (out.pos < out.size) {
        const std::size_t rc = ZSTD_decompressStream(m_dctx, &out, &in);
        if (ZSTD_isError(rc))
            throw std::runtime_error(where(seq) + ": damaged event body: " + ZSTD_getErrorName(rc));
        if (rc == 0 || (in.pos == in.size && out.pos < out.size)) break;
    }
    ZSTD_DCtx_reset(m_dctx, ZSTD_reset_session_and_parameters); // no dictionary stays referenced
    if (out.pos != out.size) throw std::runtime_error(where(seq) + ": damaged event body (short properties)");
}

void EventDecompressor::decode(EventCodec codec, std::string_view body, std::int64_t rawSize, std::string& raw,
                               std::string& properties, std::int64_t seq) {
    const std::size_t n = decodeWhole(codec, body, rawSize, seq);
    const auto rawBytes = static_cast<std::size_t>(rawSize);
    if (isSplit(codec)) {
        properties.assign(m_buffer.data(), n - rawBytes);
        raw.assign(m_buffer.data() + (n - rawBytes), rawBytes);
    } else {
        raw.assign(m_buffer.data(), rawBytes);
        properties.assign(m_buffer.data() + rawBytes, n - rawBytes);
    }
}

} // namespace pipescope::store
