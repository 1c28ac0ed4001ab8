#pragma once
// Shared by the end-to-end suites: run the real pipescope-cli (PIPESCOPE_CLI) and read what it
// wrote.
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QRegularExpression>
#include <QStandardPaths>
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

inline QList<QJsonObject> exportEvents(const QString& capture) {
    return ndjson(cli({"export", "--capture", capture, "--events"}).out);
}

// A running `pipescope-cli run`, stopped (SIGTERM) or killed by the test; killed when it goes out
// of scope still running.
class RunProcess {
public:
    ~RunProcess() {
        if (m_process.state() != QProcess::NotRunning) {
            m_process.kill();
            m_process.waitForFinished(5000);
        }
    }
    bool start(const QStringList& args) {
        m_process.setProcessChannelMode(QProcess::SeparateChannels);
        m_process.start(QStringLiteral(PIPESCOPE_CLI), QStringList{"run"} + args);
        if (!m_process.waitForStarted(10000)) return false;
        const QRegularExpression listening("collector listening on http://[^:]+:(\\d+)");
        QElapsedTimer timer;
        timer.start();
        while (timer.elapsed() < 20000) {
            m_process.waitForReadyRead(200);
            m_out += m_process.readAllStandardOutput();
            const auto match = listening.match(QString::fromUtf8(m_out));
            if (match.hasMatch()) {
                m_port = match.captured(1).toInt();
                return true;
            }
            if (m_process.state() == QProcess::NotRunning) break;
        }
        m_err = m_process.readAllStandardError();
        return false;
    }
    // SIGTERM: a clean stop. Returns the exit code (-1 when it did not stop in time).
    int stop(int timeoutMillis = 60000) {
        m_process.terminate();
        return finish(timeoutMillis);
    }
    void kill() {
        m_process.kill(); // SIGKILL: no chance to flush anything
        m_process.waitForFinished(10000);
    }
    int finish(int timeoutMillis) {
        if (!m_process.waitForFinished(timeoutMillis)) {
            m_process.kill();
            m_process.waitForFinished(5000);
            return -1;
        }
        m_out += m_process.readAllStandardOutput();
        m_err += m_process.readAllStandardError();
        return m_process.exitStatus() == QProcess::NormalExit ? m_process.exitCode() : -2;
    }
    // Waits (bounded) until the process wrote `text` to stderr.
    bool waitForErr(const QByteArray& text, int timeoutMillis) {
        QElapsedTimer timer;
        timer.start();
        while (!m_err.contains(text) && timer.elapsed() < timeoutMillis && m_process.state() == QProcess::Running) {
            m_process.waitForReadyRead(100);
            m_out += m_process.readAllStandardOutput();
            m_err += m_process.readAllStandardError();
        }
        return m_err.contains(text);
    }
    int port() const { return m_port; }
    QString url() const { return QString("http://127.0.0.1:%1").arg(m_port); }
    const QByteArray& out() const { return m_out; }
    const QByteArray& err() const { return m_err; }

private:
    QProcess m_process;
    QByteArray m_out, m_err;
    int m_port = 0;
};

// Debian's Chromium, headless, with its own profile under `profile` (inside the test's temporary
// directory, removed at the end: Chromium's helper processes may still write to it for a moment
// after the browser is killed); killed when the test is done with it.
class Browser {
public:
    ~Browser() { close(); }
    bool open(const QString& profile, const QString& url, const QStringList& extra = {}) {
        const QString chromium = QStandardPaths::findExecutable("chromium");
        if (chromium.isEmpty() || !QDir().mkpath(profile)) return false;
        m_process.start(chromium, QStringList{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                              "--no-first-run", "--disable-background-networking",
                                              "--disable-component-update", "--disable-sync",
                                              "--user-data-dir=" + profile, "--remote-debugging-port=0"} +
                                      extra + QStringList{url});
        return m_process.waitForStarted(20000);
    }
    void close() {
        if (m_process.state() == QProcess::NotRunning) return;
        m_process.kill();
        m_process.waitForFinished(10000);
    }

private:
    QProcess m_process;
};

// The real SDKs of tests/e2e, installed from the npm registry under the build directory (never
// in the tree) with the scripts beside node_modules (ES modules resolve packages from where they
// are). Shared by the e2e suites; CTest's RESOURCE_LOCK keeps two from installing at once.
// Returns an error message, empty on success.
inline QString installE2eNode(QString& node, QString& modules) {
    node = QStandardPaths::findExecutable("node");
    const QString npm = QStandardPaths::findExecutable("npm");
    if (node.isEmpty() || npm.isEmpty()) return "node and npm are required (packaging/install-deps.sh installs them)";
    const QString source = QStringLiteral(PIPESCOPE_SOURCE_DIR) + "/tests/e2e";
    modules = QStringLiteral(PIPESCOPE_BINARY_DIR) + "/e2e-node";
    QDir().mkpath(modules);
    for (const QFileInfo& file : QDir(source).entryInfoList({"*.json", "*.mjs"}, QDir::Files)) {
        QFile::remove(modules + "/" + file.fileName());
        if (!QFile::copy(file.filePath(), modules + "/" + file.fileName())) return "cannot copy " + file.filePath();
    }
    const QString installed = modules + "/node_modules/.package-lock.json";
    if (!QFileInfo::exists(installed) ||
        QFileInfo(installed).lastModified() < QFileInfo(source + "/package-lock.json").lastModified()) {
        QProcess install;
        install.setWorkingDirectory(modules);
        install.start(npm, {"ci", "--no-audit", "--no-fund", "--loglevel=error"});
        if (!install.waitForFinished(300000)) return "npm ci did not finish in 5 minutes";
        if (install.exitCode() != 0) return "npm ci failed: " + QString::fromUtf8(install.readAllStandardError());
    }
    return {};
}

} // namespace cli_test
