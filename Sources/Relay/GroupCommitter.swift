import CChecksum
import Foundation
import NIOCore
import Synchronization
import Threads

/// One thread that writes spool files and makes them durable in batches.
/// A writer hands over a closure that fills its file and waits on a
/// continuation: one hand-off per message, where a pool thread for the
/// writing and this one for the sync made two. While a batch syncs, the
/// next one gathers: a batch of one is fsync'd file and folder; a bigger
/// one is renamed into place and made durable by one syncfs(2). Delivered
/// files go to free/ here too, between batches, and new files overwrite
/// them before any is created.
final class GroupCommitter: @unchecked Sendable {
    private struct File {
        let fd: Int32
        let path: String
        let final: String
        /// A file from free/, written over: what is left past the new end is cut.
        let reused: Bool
    }

    private struct Job {
        let final: String
        /// Writes the file's content (on the committer's thread).
        let write: @Sendable (_ fd: Int32, _ path: String) throws -> Void
        /// A new message (its file goes if the batch fails), not an envelope replaced in place.
        let isNew: Bool
        let done: CheckedContinuation<Void, Error>
    }

    /// Spare files kept in free/ at most, and the largest kept; past
    /// either, delivered files are unlinked (spares hold their old blocks).
    static let maxSpares = 128
    static let maxSpareSize = 256 * 1024

    // The inbox, guarded by `condition`.
    private let condition = NSCondition()
    private var pending: [Job] = []
    private var removals: [(path: String, recycle: Bool)] = []
    private var adopted: [String] = []
    private var drains: [CheckedContinuation<Void, Never>] = []
    // The committer thread's own.
    private var spares: [String] = []
    private var created = 0
    /// Starts the name of every file this committer creates in tmp/, so
    /// recovery running beside it leaves them alone.
    let tag = "w" + String(UInt64.random(in: 0...UInt64.max), radix: 36) + "."

    private let directoryFD: Int32
    private let directory: String
    private let tmp: String
    private let free: String

    init(directory: String, tmp: String, free: String) throws {
        self.directory = directory
        self.tmp = tmp
        self.free = free
        directoryFD = Foundation.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw SpoolError(op: "open", path: directory, errno: errno) }
        detachNamedThread("mxgate-spool") { [self] in self.run() }
    }

    /// Whether a name in tmp/ is one of this committer's files.
    func owns(_ name: String) -> Bool { name.hasPrefix(tag) }

    /// Writes a file with `write` and makes it `final`, durably.
    func commit(to final: String, isNew: Bool, write: @escaping @Sendable (_ fd: Int32, _ path: String) throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            post { $0.pending.append(Job(final: final, write: write, isNew: isNew, done: c)) }
        }
    }

    /// Unlinks `path`, or with `recycle` keeps it in free/ for reuse.
    func removeLater(_ path: String, recycle: Bool) {
        post { $0.removals.append((path, recycle)) }
    }

    /// Spare files a previous run left in free/. Only the process that
    /// recovered the spool may take them: another one (the queue tools)
    /// could be writing the same file.
    func adopt(_ paths: [String]) {
        post { $0.adopted += paths }
    }

    /// Returns once every removal asked for so far is done.
    func drain() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            post { $0.drains.append(c) }
        }
    }

    private func post(_ change: (GroupCommitter) -> Void) {
        condition.lock()
        change(self)
        condition.signal()
        condition.unlock()
    }

    // The committer lives as long as the process (one per spool directory).
    private func run() {
        while true {
            condition.lock()
            while pending.isEmpty && removals.isEmpty && adopted.isEmpty && drains.isEmpty { condition.wait() }
            let batch = pending, gone = removals, drained = drains
            // A spare recycled while recovery listed free/ may come twice:
            // two jobs writing one file would mix two messages.
            for path in adopted where !spares.contains(path) { spares.append(path) }
            pending.removeAll()
            removals.removeAll()
            adopted.removeAll()
            drains.removeAll()
            condition.unlock()
            if !batch.isEmpty { commit(batch) }
            for r in gone { remove(r.path, recycle: r.recycle) }
            for d in drained { d.resume() }
        }
    }

    private func remove(_ path: String, recycle: Bool) {
        guard recycle && spares.count < Self.maxSpares else {
            unlink(path)
            return
        }
        let spare = free + "/" + path.split(separator: "/").last!
        guard Foundation.rename(path, spare) == 0 else {
            unlink(path)
            return
        }
        spares.append(spare)
    }

    /// A file to write a job into: a spare from free/, written over from
    /// its start (not truncated: freeing its blocks and allocating them
    /// again cost more than the rest of the write), or a new one in tmp/.
    private func open(for job: Job) throws -> File {
        while let spare = spares.popLast() {
            let fd = Foundation.open(spare, O_WRONLY | O_CLOEXEC)
            if fd >= 0 { return File(fd: fd, path: spare, final: job.final, reused: true) }
        }
        created += 1
        let path = tmp + "/" + tag + job.final.split(separator: "/").last! + "." + String(created)
        let fd = Foundation.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SpoolError(op: "create", path: path, errno: errno) }
        return File(fd: fd, path: path, final: job.final, reused: false)
    }

    private func write(_ job: Job) throws -> File {
        let f = try open(for: job)
        do {
            try job.write(f.fd, f.path)
            if f.reused {
                let end = lseek(f.fd, 0, SEEK_CUR)
                var st = stat()
                guard end >= 0, fstat(f.fd, &st) == 0 else { throw SpoolError(op: "stat", path: f.path, errno: errno) }
                if st.st_size > end, ftruncate(f.fd, end) != 0 { throw SpoolError(op: "truncate", path: f.path, errno: errno) }
            }
        } catch {
            close(f.fd)
            unlink(f.path)
            throw error
        }
        return f
    }

    private func commit(_ batch: [Job]) {
        var results: [Result<File, Error>] = batch.map { job in Result { try write(job) } }
        var dirError: Error?
        if batch.count == 1 {
            // Alone: fsync the file, rename it, fsync the folder.
            if case .success(let f) = results[0] {
                do { try Self.syncAndRename(f) } catch { results[0] = .failure(error) }
                if case .success = results[0], fsync(directoryFD) != 0 {
                    dirError = SpoolError(op: "fsync", path: directory, errno: errno)
                }
            }
        } else {
            // Several waiting: rename them all, then one syncfs(2) makes
            // every file and every rename durable at once.
            for i in results.indices {
                guard case .success(let f) = results[i] else { continue }
                do { try Self.rename(f) } catch { results[i] = .failure(error) }
            }
            if linuxSyncfs(directoryFD) != 0 {
                dirError = SpoolError(op: "syncfs", path: directory, errno: errno)
            }
        }
        for (job, result) in zip(batch, results) {
            switch (result, dirError) {
            case (.success, nil):
                job.done.resume()
            case (.success(let f), let e?):
                if job.isNew { unlink(f.final) }
                job.done.resume(throwing: e)
            case (.failure(let e), _):
                job.done.resume(throwing: e)
            }
        }
    }

    /// Renames a file into place (a syncfs follows); on failure it is gone.
    private static func rename(_ f: File) throws {
        defer { close(f.fd) }
        if Foundation.rename(f.path, f.final) != 0 {
            let e = SpoolError(op: "rename", path: f.path, errno: errno)
            unlink(f.path)
            throw e
        }
    }

    /// fsync then rename a file; on failure it is gone (a state file
    /// replaced in place keeps its old version).
    private static func syncAndRename(_ f: File) throws {
        defer { close(f.fd) }
        var failure: SpoolError?
        if fsync(f.fd) != 0 {
            failure = SpoolError(op: "fsync", path: f.path, errno: errno)
        } else if Foundation.rename(f.path, f.final) != 0 {
            failure = SpoolError(op: "rename", path: f.path, errno: errno)
        }
        if let failure {
            unlink(f.path)
            throw failure
        }
    }
}

/// syncfs(2): glibc declares it only under _GNU_SOURCE, which Swift's Glibc
/// module does not set.
@_silgen_name("syncfs")
private func linuxSyncfs(_ fd: Int32) -> Int32
