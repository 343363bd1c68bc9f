"""An exception from a value set in another thread: a reload thread sets settings.batch_size from a
config without that key (0), and the main thread then divides by it."""

import threading


class Settings:
    def __init__(self):
        self.batch_size = 10


settings = Settings()


def reload_settings(config):
    size = config.get("batch_size", 0)
    settings.batch_size = size


def batches(items):
    count = len(items) // settings.batch_size
    return count


def main():
    worker = threading.Thread(target=reload_settings, args=({"batch": 5},))
    worker.start()
    worker.join()
    return batches(list(range(40)))


if __name__ == "__main__":
    main()
