import NIOCore
import Synchronization

/// Runs a task's jobs on one event loop (SE-0417 task executor preference).
/// A session's task then resumes on the loop that reads and writes its
/// sockets: no thread switch per read, write or downstream reply, and its
/// nonisolated async calls need no executor hop either.
public final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    public let loop: EventLoop
    public init(_ loop: EventLoop) { self.loop = loop }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}

/// One task executor per event loop of the group, made once.
public final class LoopExecutors: Sendable {
    private let byLoop: [ObjectIdentifier: EventLoopTaskExecutor]
    private let all: [EventLoopTaskExecutor]
    private let turn = Atomic<Int>(0)
    public let any: EventLoopTaskExecutor

    public init(_ group: EventLoopGroup) {
        var all: [ObjectIdentifier: EventLoopTaskExecutor] = [:]
        for loop in group.makeIterator() { all[ObjectIdentifier(loop)] = EventLoopTaskExecutor(loop) }
        byLoop = all
        self.all = Array(all.values)
        any = self.all[0]
    }

    public subscript(loop: EventLoop) -> EventLoopTaskExecutor? { byLoop[ObjectIdentifier(loop)] }

    /// The loops in turn, to spread work that belongs to no connection.
    public func next() -> EventLoopTaskExecutor {
        all[turn.wrappingAdd(1, ordering: .relaxed).oldValue % all.count]
    }
}
