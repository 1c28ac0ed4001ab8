#pragma once
// How a capture keeps an event's bytes (schema v3): one zstd frame of its properties, then its
// raw bytes, with a block boundary between them. The raw bytes, which hold the properties, cost
// little after them; a scan of the properties (filters, the inspector's property columns)
// decodes only the first block and stops. Once the capture has seen enough events, frames use a
// dictionary trained on them and kept in the file, so that each small frame does not start from
// nothing. Schema v2 kept raw first, in one block; still read.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;
struct ZSTD_CDict_s;
struct ZSTD_DDict_s;

namespace pipescope::store {

// The `codec` column of a v2 events row.
enum class EventCodec : std::uint8_t {
    Columns = 0,    // `raw` and `properties` in their own columns (every row of a version-1 capture)
    Zstd = 1,       // `body`: one zstd frame of raw then properties; `raw_size` says where raw ends
    ZstdDict = 2,   // the same, compressed with a dictionary of the `dictionaries` table (its id in the frame)
    // `body`: one frame of the properties then the raw bytes, flushed between the two (a block
    // ends where the properties end); `raw_size` says how much of it is raw. The frame names its
    // dictionary, if any.
    ZstdSplit = 3,
    ZstdDictSplit = 4,
};

struct EncodedEvent {
    EventCodec codec = EventCodec::Zstd;
    std::string body;
};

// Compresses events (CaptureWriter: on the appending thread, one at a time). Until a dictionary
// exists, the first events are kept
// as training samples; after kTrainingEvents, one is trained and used from then on.
class EventCompressor {
public:
    static constexpr std::size_t kTrainingEvents = 2000;
    static constexpr std::size_t kTrainingBytes = 8 << 20;
    static constexpr std::size_t kDictionaryBytes = 64 << 10;

    EventCompressor();
    ~EventCompressor();
    EventCompressor(const EventCompressor&) = delete;
    EventCompressor& operator=(const EventCompressor&) = delete;

    // Continues with a dictionary already in the file (a resumed capture).
    void useDictionary(std::uint32_t id, std::string bytes);
    void encode(std::string_view raw, std::string_view properties, EncodedEvent& out);

    // The dictionary in use (trained or given), which the file must hold before any row using it.
    bool hasDictionary() const { return m_dictionaryId != 0; }
    std::uint32_t dictionaryId() const { return m_dictionaryId; }
    const std::string& dictionary() const { return m_dictionary; }

private:
    void train();

    ZSTD_CCtx_s* m_cctx = nullptr;
    ZSTD_CDict_s* m_cdict = nullptr;
    std::uint32_t m_dictionaryId = 0;
    std::string m_dictionary;
    bool m_trainingDone = false;   // trained, given up, or given a dictionary
    std::string m_samples;
    std::vector<std::size_t> m_sampleSizes;
    std::string m_scratch;          // the frames being written
};

// Decompresses events for readers (and the writer's duplicate lookups). Dictionaries are
// fetched by id when a frame first needs one: a live capture may gain its dictionary after the
// reader opened.
class EventDecompressor {
public:
    using DictionaryLoader = std::function<std::optional<std::string>(std::uint32_t id)>;
    // `source` names the capture in errors.
    EventDecompressor(std::string source, DictionaryLoader loader);
    ~EventDecompressor();
    EventDecompressor(const EventDecompressor&) = delete;
    EventDecompressor& operator=(const EventDecompressor&) = delete;

    // Throws std::runtime_error (a damaged frame, a missing dictionary) naming the event's seq.
    void decode(EventCodec codec, std::string_view body, std::int64_t rawSize, std::string& raw,
                std::string& properties, std::int64_t seq);
    // Only the properties (for a pair, only their frame is decompressed).
    void decodeProperties(EventCodec codec, std::string_view body, std::int64_t rawSize, std::string& properties,
                          std::int64_t seq);

private:
    // The whole frame into m_buffer; returns its size.
    std::size_t decodeWhole(EventCodec codec, std::string_view body, std::int64_t rawSize, std::int64_t seq);
    std::string where(std::int64_t seq) const;
    ZSTD_DDict_s* dictionary(std::uint32_t id, std::int64_t seq);

    std::string m_source;
    DictionaryLoader m_loader;
    ZSTD_DCtx_s* m_dctx = nullptr;
    std::map<std::uint32_t, ZSTD_DDict_s*> m_dictionaries;
    std::string m_buffer;
};

} // namespace pipescope::store
