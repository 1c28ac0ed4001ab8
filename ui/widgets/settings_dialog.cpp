#include "widgets/settings_dialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontDatabase>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSaveFile>
#include <QSpinBox>
#include <QVBoxLayout>

namespace pipescope {

namespace {
using ojson = nlohmann::ordered_json;
const char* kMarked = "border: 2px solid #c9364a; background: #fde6e8;";
} // namespace

SettingsDialog::SettingsDialog(const QString& file, QWidget* parent) : QDialog(parent), m_file(file) {
    setWindowTitle(tr("Pipeline settings"));
    auto* layout = new QVBoxLayout(this);
    auto* intro = new QLabel(tr("Saved as <code>%1</code>; the same file works with "
                                "<code>pipescope-cli run --config</code>.").arg(file.toHtmlEscaped()), this);
    intro->setWordWrap(true);
    layout->addWidget(intro);
    auto* form = new QFormLayout;
    m_address = new QLineEdit(this);
    m_address->setToolTip(tr("127.0.0.1 keeps the collector on this machine; anything else exposes it to the network"));
    form->addRow(tr("Collector address"), m_address);
    m_port = new QSpinBox(this);
    m_port->setRange(0, 65535);
    m_port->setSpecialValueText(tr("0 (any free port)"));
    form->addRow(tr("Collector port"), m_port);
    auto* schemasRow = new QHBoxLayout;
    m_schemas = new QLineEdit(this);
    m_schemas->setPlaceholderText(tr("schemas/<event>/<version>.json; empty: no validation"));
    auto* browse = new QPushButton(tr("Browse…"), this);
    schemasRow->addWidget(m_schemas, 1);
    schemasRow->addWidget(browse);
    form->addRow(tr("Schemas folder"), schemasRow);
    m_unplanned = new QComboBox(this);
    m_unplanned->addItems({"allow", "warn", "dlq"});
    m_unplanned->setToolTip(tr("Events without a schema: allow (deliver), warn (deliver, count as findings), dlq (dead-letter)"));
    form->addRow(tr("Unplanned events"), m_unplanned);
    m_dedupEnabled = new QCheckBox(tr("Drop duplicates"), this);
    form->addRow(tr("Dedup"), m_dedupEnabled);
    m_dedupWindow = new QLineEdit(this);
    m_dedupWindow->setPlaceholderText(tr("e.g. 24h, 30m"));
    form->addRow(tr("Dedup window"), m_dedupWindow);
    m_dedupMode = new QComboBox(this);
    m_dedupMode->addItems({"exact", "bloom"});
    form->addRow(tr("Dedup mode"), m_dedupMode);
    m_correlate = new QLineEdit(this);
    m_correlate->setPlaceholderText(tr("extra correlation keys, comma-separated (e.g. order_id)"));
    form->addRow(tr("Correlation keys"), m_correlate);
    m_durability = new QComboBox(this);
    m_durability->addItems({"full", "process"});
    m_durability->setToolTip(tr("full: a 200 means fsynced to disk; process: survives a crash of Pipescope only"));
    form->addRow(tr("Durability"), m_durability);
    m_destinations = new QPlainTextEdit(this);
    m_destinations->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    m_destinations->setPlaceholderText(
        tr("[{\"name\": \"archive\", \"type\": \"ndjson\", \"path\": \"archive.ndjson\"}]  — see resources/pipescope.json"));
    m_destinations->setMinimumHeight(120);
    form->addRow(tr("Destinations (JSON)"), m_destinations);
    layout->addLayout(form);
    m_error = new QLabel(this);
    m_error->setWordWrap(true);
    m_error->setStyleSheet(QStringLiteral("color: #b00020;"));
    m_error->hide();
    layout->addWidget(m_error);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Save | QDialogButtonBox::Cancel, this);
    layout->addWidget(buttons);
    connect(buttons, &QDialogButtonBox::accepted, this, &SettingsDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &SettingsDialog::reject);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Schemas folder"), m_schemas->text());
        if (!dir.isEmpty()) m_schemas->setText(dir);
    });
    m_fields = {m_address, m_port, m_schemas, m_unplanned, m_dedupWindow, m_dedupMode, m_correlate, m_durability, m_destinations};
    load();
    resize(640, 560);
}

void SettingsDialog::load() {
    QFile in(m_file);
    if (in.open(QIODevice::ReadOnly)) {
        const QByteArray bytes = in.readAll();
        auto parsed = ojson::parse(bytes.begin(), bytes.end(), nullptr, false);
        if (parsed.is_object()) m_original = parsed;
    }
    const ojson& j = m_original;
    const ojson collector = j.value("collector", ojson::object());
    m_address->setText(QString::fromStdString(collector.value("address", std::string("127.0.0.1"))));
    m_port->setValue(collector.contains("port") && collector["port"].is_number_integer() ? collector["port"].get<int>() : 8089);
    m_schemas->setText(QString::fromStdString(j.value("schemas", std::string())));
    m_unplanned->setCurrentText(QString::fromStdString(j.value("unplanned", std::string("allow"))));
    const ojson dedup = j.value("dedup", ojson::object());
    m_dedupEnabled->setChecked(dedup.value("enabled", true));
    m_dedupWindow->setText(QString::fromStdString(dedup.contains("window") && dedup["window"].is_string() ? dedup["window"].get<std::string>() : std::string()));
    m_dedupMode->setCurrentText(QString::fromStdString(dedup.value("mode", std::string("exact"))));
    QStringList keys;
    if (j.contains("identity") && j["identity"].contains("correlate") && j["identity"]["correlate"].is_array())
        for (const auto& k : j["identity"]["correlate"])
            if (k.is_string()) keys << QString::fromStdString(k.get<std::string>());
    m_correlate->setText(keys.join(QStringLiteral(", ")));
    m_durability->setCurrentText(QString::fromStdString(j.value("durability", std::string("full"))));
    if (j.contains("destinations")) m_destinations->setPlainText(QString::fromStdString(j["destinations"].dump(2)));
}

ojson SettingsDialog::document() const {
    ojson j = m_original;
    ojson collector = j.value("collector", ojson::object());
    collector["address"] = m_address->text().trimmed().toStdString();
    collector["port"] = m_port->value();
    j["collector"] = collector;
    if (m_schemas->text().trimmed().isEmpty()) j.erase("schemas");
    else j["schemas"] = m_schemas->text().trimmed().toStdString();
    j["unplanned"] = m_unplanned->currentText().toStdString();
    ojson dedup = j.value("dedup", ojson::object());
    dedup["enabled"] = m_dedupEnabled->isChecked();
    if (m_dedupWindow->text().trimmed().isEmpty()) dedup.erase("window");
    else dedup["window"] = m_dedupWindow->text().trimmed().toStdString();
    dedup["mode"] = m_dedupMode->currentText().toStdString();
    j["dedup"] = dedup;
    ojson correlate = ojson::array();
    for (const QString& key : m_correlate->text().split(',', Qt::SkipEmptyParts))
        if (!key.trimmed().isEmpty()) correlate.push_back(key.trimmed().toStdString());
    ojson identity = j.value("identity", ojson::object());
    identity["correlate"] = correlate;
    j["identity"] = identity;
    j["durability"] = m_durability->currentText().toStdString();
    const QString destinations = m_destinations->toPlainText().trimmed();
    if (destinations.isEmpty()) {
        j.erase("destinations");
    } else {
        const QByteArray bytes = destinations.toUtf8();
        auto parsed = ojson::parse(bytes.begin(), bytes.end(), nullptr, false);
        // Not JSON: kept as text, so the parser's type error names the field.
        j["destinations"] = parsed.is_discarded() ? ojson(destinations.toStdString()) : parsed;
    }
    return j;
}

void SettingsDialog::mark(QWidget* field) {
    for (QWidget* f : m_fields) f->setStyleSheet({});
    if (field) {
        field->setStyleSheet(QString::fromLatin1(kMarked));
        field->setFocus();
    }
}

QString SettingsDialog::check() {
    const ojson document = this->document();
    // Destinations that are not JSON at all get a message of their own (with the offset).
    const QString destinations = m_destinations->toPlainText().trimmed();
    if (!destinations.isEmpty() && document["destinations"].is_string()) {
        const QByteArray bytes = destinations.toUtf8();
        QString message;
        try {
            (void)ojson::parse(bytes.begin(), bytes.end());
        } catch (const nlohmann::json::parse_error& e) {
            message = tr("destinations: not JSON (at byte %1): %2").arg(e.byte).arg(QString::fromStdString(e.what()));
        }
        m_error->setText(message);
        m_error->show();
        mark(m_destinations);
        return message;
    }
    try {
        const QString base = QFileInfo(m_file).absolutePath();
        m_config = parseRunConfig(nlohmann::json::parse(document.dump()), base.toStdString(), "");
    } catch (const std::exception& e) {
        const QString message = QString::fromStdString(e.what());
        // The parser names the field first: "dedup.window: ...", "destinations[0].url: ...".
        const QString field = message.section(':', 0, 0);
        QWidget* widget = nullptr;
        if (field.startsWith(QStringLiteral("collector.port"))) widget = m_port;
        else if (field.startsWith(QStringLiteral("collector"))) widget = m_address;
        else if (field.startsWith(QStringLiteral("schemas"))) widget = m_schemas;
        else if (field.startsWith(QStringLiteral("unplanned"))) widget = m_unplanned;
        else if (field.startsWith(QStringLiteral("dedup.window"))) widget = m_dedupWindow;
        else if (field.startsWith(QStringLiteral("dedup.mode"))) widget = m_dedupMode;
        else if (field.startsWith(QStringLiteral("identity"))) widget = m_correlate;
        else if (field.startsWith(QStringLiteral("durability"))) widget = m_durability;
        else if (field.startsWith(QStringLiteral("destinations"))) widget = m_destinations;
        m_error->setText(message);
        m_error->show();
        mark(widget);
        return message;
    }
    if (!m_schemas->text().trimmed().isEmpty() && !QFileInfo(m_schemas->text().trimmed()).isDir() &&
        !QFileInfo(QFileInfo(m_file).absoluteDir().filePath(m_schemas->text().trimmed())).isDir()) {
        const QString message = tr("schemas: %1 is not a folder").arg(m_schemas->text().trimmed());
        m_error->setText(message);
        m_error->show();
        mark(m_schemas);
        return message;
    }
    m_error->hide();
    mark(nullptr);
    return {};
}

bool SettingsDialog::save() {
    if (!check().isEmpty()) return false;
    QDir().mkpath(QFileInfo(m_file).absolutePath());
    QSaveFile out(m_file);
    const std::string text = document().dump(2) + "\n";
    if (!out.open(QIODevice::WriteOnly) || out.write(text.data(), qint64(text.size())) != qint64(text.size()) || !out.commit()) {
        m_error->setText(tr("%1: cannot write: %2").arg(m_file, out.errorString()));
        m_error->show();
        return false;
    }
    return true;
}

void SettingsDialog::accept() {
    if (save()) QDialog::accept();
}

} // namespace pipescope
