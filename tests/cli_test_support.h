#pragma once
// Shared by the end-to-end suites: run the real pipescope-cli (PIPESCOPE_CLI) and read what it
// wrote.
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QtTest>

#include <zlib.h>

namespace cli_test {

struct Run {
    int exitCode = -1;
    QByteArray out;
    QByteArray err;
};

inline Run cli(const QStringList& args, const QByteArray& stdinData = {}) {
    QProcess process;
    process.start(QStringLiteral(PIPESCOPE_CLI), args);
    if (!process.waitForStarted(10000)) return {};
    if (!stdinData.isEmpty()) process.write(stdinData);
    process.closeWriteChannel();
    if (!process.waitForFinished(120000)) {
        process.kill();
        process.waitForFinished(5000);
        return {};
    }
    Run run;
    run.exitCode = process.exitStatus() == QProcess::NormalExit ? process.exitCode() : -2;
    run.out = process.readAllStandardOutput();
    run.err = process.readAllStandardError();
    return run;
}

inline void writeFile(const QString& path, const QByteArray& bytes) {
    QDir().mkpath(QFileInfo(path).absolutePath());
    QFile file(path);
    QVERIFY2(file.open(QIODevice::WriteOnly), qPrintable(path));
    QCOMPARE(file.write(bytes), bytes.size());
}

inline void writeGzip(const QString& path, const QByteArray& bytes) {
    gzFile file = gzopen(path.toUtf8().constData(), "wb");
    QVERIFY(file);
    QCOMPARE(gzwrite(file, bytes.constData(), static_cast<unsigned>(bytes.size())), int(bytes.size()));
    QCOMPARE(gzclose(file), Z_OK);
}

inline QJsonObject readJson(const QString& path) {
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) return {};
    return QJsonDocument::fromJson(file.readAll()).object();
}

inline QList<QJsonObject> ndjson(const QByteArray& text) {
    QList<QJsonObject> rows;
    for (const QByteArray& line : text.split('\n'))
        if (!line.isEmpty()) rows << QJsonDocument::fromJson(line).object();
    return rows;
}

inline QByteArray json(const QJsonObject& object) { return QJsonDocument(object).toJson(QJsonDocument::Compact); }

} // namespace cli_test
