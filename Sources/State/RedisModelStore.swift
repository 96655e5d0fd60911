import Classifier
import Foundation

/// The classifier's model in Redis (`[classifier] shared = true` with
/// `[state] redis`): what `mxgate learn`, autolearn or a release teaches
/// through one gateway, every gateway classifies with. The model is one
/// value (the model file's own bytes, CRC included), replaced whole with a
/// version counter beside it that readers poll; writers serialise on a
/// lock key that expires, so a writer that dies cannot hold it.
public struct RedisModelStore: ModelStore {
    public let redis: RedisStore
    let key: String
    public var location: String { "\(redis.location) \(redis.prefix)\(key)" }

    public init(redis: RedisStore, key: String = "classifier:model") {
        self.redis = redis
        self.key = key
    }

    public func version() -> String? {
        (try? redis.command(["GET", redis.prefix + key + ":version"]))?.text
    }

    public func load() throws -> LogisticModel? {
        let r: RedisStore.Reply
        do { r = try redis.command(["GET", redis.prefix + key]) } catch {
            throw ModelStoreError(location: location, message: "\(error)")
        }
        guard case .string(let bytes) = r else { return nil }
        return try ModelFile.decode(bytes, location: location)
    }

    public func update(dimensionBits: Int, _ change: (inout LogisticModel) throws -> Void) throws -> LogisticModel {
        let lockKey = redis.prefix + key + ":lock"
        let token = UUID().uuidString
        let deadline = Date().addingTimeInterval(30)
        while true {
            let got: Bool
            do { got = try redis.command(["SET", lockKey, token, "PX", "30000", "NX"]) != .null } catch {
                throw ModelStoreError(location: location, message: "\(error)")
            }
            if got { break }
            guard Date() < deadline else { throw ModelStoreError(location: location, message: "another writer holds the model's lock") }
            usleep(20_000)
        }
        defer {
            _ = try? redis.command(["EVAL", "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                                    "1", lockKey, token])
        }
        var model = try load() ?? LogisticModel(dimensionBits: dimensionBits)
        try change(&model)
        do {
            _ = try redis.command([Array("SET".utf8), Array((redis.prefix + key).utf8), ModelFile.encode(model)])
            _ = try redis.command(["INCR", redis.prefix + key + ":version"])
        } catch {
            throw ModelStoreError(location: location, message: "\(error)")
        }
        return model
    }
}
