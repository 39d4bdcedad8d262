// The plain Kotlin core: no IntelliJ imports. build.sh compiles and tests the same sources
// with the npm Kotlin compiler where Gradle can't run.
plugins {
    kotlin("jvm")
}

repositories { mavenCentral() }

kotlin { jvmToolchain(17) }

dependencies {
    // The IntelliJ Platform ships Gson: the plugin uses the IDE's copy.
    compileOnly("com.google.code.gson:gson:2.10.1")
    compileOnly(kotlin("stdlib"))
    testImplementation("com.google.code.gson:gson:2.10.1")
    testImplementation(kotlin("stdlib"))
    testImplementation(platform("org.junit:junit-bom:5.11.4"))
    testImplementation("org.junit.jupiter:junit-jupiter")
    testRuntimeOnly("org.junit.platform:junit-platform-launcher")
}

tasks.test {
    useJUnitPlatform()
    // The real helper: `make doppel` builds it.
    environment("DOPPEL_BIN", System.getenv("DOPPEL_BIN") ?: rootDir.resolve("../../bin/doppel").canonicalPath)
}
